import Foundation

/// os-release(5) / extension-release parsing: `KEY=VALUE` lines, values optionally in single or
/// double quotes (backslash escapes inside double quotes), `#` comments and blank lines skipped.
/// Returns lines as `KEY=value` with quoting removed, in file order, as systemd-dissect prints them.
public enum OSRelease {
    public static func parse(_ text: String) -> [String] {
        var result: [String] = []
        for rawLine in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else { continue }
            result.append("\(key)=\(unquote(String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)))")
        }
        return result
    }

    static func unquote(_ value: String) -> String {
        var out = ""
        var quote: Character? = nil
        var escaped = false
        for ch in value {
            if escaped {
                out.append(ch)
                escaped = false
            } else if ch == "\\" && quote != "'" {
                escaped = true
            } else if let q = quote {
                if ch == q { quote = nil } else { out.append(ch) }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if ch == "#" && (out.isEmpty || out.last == " ") {
                break
            } else {
                out.append(ch)
            }
        }
        return out.trimmingCharacters(in: .whitespaces)
    }
}
