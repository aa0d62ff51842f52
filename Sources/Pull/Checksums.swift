import Foundation

/// A SHA256SUMS (or `<file>.sha256`) file, as FORMATS.md section 4 and SECURITY.md 8 read it.
///
/// Each line that counts has exactly this shape, from the first byte of the line:
///
/// | part      | bytes | what                                            |
/// |-----------|-------|-------------------------------------------------|
/// | digest    | 64    | lower- or upper-case hex SHA-256                |
/// | separator | 1-2   | " " then optionally "*" (binary) or " " (text)   |
/// | name      | rest  | the file name, compared byte for byte           |
///
/// Anything else (comments, lines for other files, a digest not at the start of a line) is
/// ignored; two different digests for the same name are refused.
package struct ChecksumFile {
    let name: String
    private var entries: [String: String] = [:]
    private var conflicting: Set<String> = []

    /// The names a checksum file may have: never verify one of them against itself.
    static func isChecksumFileName(_ name: String) -> Bool {
        name == "SHA256SUMS" || name.hasSuffix(".sha256") || name.hasSuffix(".sha256.asc") || name.hasSuffix(".sha256.gpg")
            || name == "SHA256SUMS.gpg" || name == "SHA256SUMS.asc"
    }

    package init(name: String, contents: [UInt8]) {
        self.name = name
        for rawLine in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            var line = Array(rawLine)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            guard line.count > 66 else { continue }
            let digest = line[0..<64]
            guard digest.allSatisfy({ Self.isHex($0) }), line[64] == UInt8(ascii: " ") else { continue }
            var start = 65
            if line[65] == UInt8(ascii: "*") || line[65] == UInt8(ascii: " ") { start = 66 }
            guard start < line.count else { continue }
            let file = String(decoding: line[start...], as: UTF8.self)
            let hex = String(decoding: digest, as: UTF8.self).lowercased()
            if let previous = entries[file], previous != hex { conflicting.insert(file) }
            entries[file] = hex
        }
    }

    /// The expected digest for `file`, or an error saying why there is none.
    package func digest(for file: String) throws -> String {
        if conflicting.contains(file) { throw PullError.conflictingChecksumEntries(file: file, checksumFile: name) }
        guard let hex = entries[file] else { throw PullError.noChecksumEntry(file: file, checksumFile: name) }
        return hex
    }

    /// The digest for `file` if the checksum file has a line for it.
    package func optionalDigest(for file: String) throws -> String? {
        if conflicting.contains(file) { throw PullError.conflictingChecksumEntries(file: file, checksumFile: name) }
        return entries[file]
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte)
    }
}
