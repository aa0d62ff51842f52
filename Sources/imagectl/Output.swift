import Foundation
import ProgressReport

/// Output helpers shared by every verb: JSON in one stable form, and aligned tables.
enum Output {
    /// Prints a value as JSON (sorted keys, ISO-8601 dates, one document followed by a newline).
    static func printJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        var text = String(decoding: try encoder.encode(value), as: UTF8.self)
        // JSONEncoder prints an empty array as "[\n\n]" when pretty; systemd prints "[]".
        if text.count < 8, text.filter({ !$0.isWhitespace }) == "[]" { text = "[]" }
        Terminal.standardOutput(text + "\n")
    }

    /// How a table is printed: with its legend (header, footer, "No ..." line) or not; fitted to
    /// the terminal's width (cells ellipsized, only when standard output is a terminal) or full.
    struct TableStyle: Sendable {
        var legend = true
        var full = false
    }

    /// The width to fit tables into: nil when standard output is not a terminal or --full was
    /// given (never ellipsize then), else $COLUMNS or the terminal's width.
    static func tableWidth(_ style: TableStyle) -> Int? {
        guard !style.full, Terminal.outputIsTerminal else { return nil }
        let environment = ProcessInfo.processInfo.environment["COLUMNS"].flatMap { Int($0) }
        return TerminalWidth.columns(of: 1, environmentColumns: environment)
    }

    /// Column widths for `widths` (the natural ones) fitted into `limit` columns with two spaces
    /// between columns: the widest column gives up one column at a time, none below 6 (or its
    /// header's natural width, whichever is smaller).
    static func fitted(_ natural: [Int], minimum: [Int], into limit: Int) -> [Int] {
        var widths = natural
        func total() -> Int { widths.reduce(0, +) + 2 * max(0, widths.count - 1) }
        while total() > limit {
            guard let index = widths.indices.filter({ widths[$0] > minimum[$0] }).max(by: { widths[$0] < widths[$1] }) else { break }
            widths[index] -= 1
        }
        return widths
    }

    /// `text` cut to `width` characters, ending in "…" when cut.
    static func ellipsized(_ text: String, _ width: Int) -> String {
        guard text.count > width else { return text }
        return width <= 1 ? String(text.prefix(width)) : String(text.prefix(width - 1)) + "…"
    }

    /// Prints rows as a table with left-aligned columns separated by two spaces. The header is
    /// printed in capitals, as machinectl does; `footer` (e.g. "3 images listed.") follows a blank
    /// line when given.
    /// With `style.legend` false neither header nor footer is printed; the cells are ellipsized
    /// to the terminal's width unless `style.full` (or standard output is not a terminal).
    static func printTable(header: [String], rows: [[String]], footer: String? = nil, style: TableStyle = TableStyle()) {
        var widths = header.map { style.legend ? $0.count : 0 }
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        if let limit = tableWidth(style) {
            widths = fitted(widths, minimum: widths.indices.map { min(widths[$0], max(6, style.legend ? header[$0].count : 0)) }, into: limit - 1)
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (i, cell) in cells.enumerated() {
                let isLast = i == cells.count - 1
                let fitted = ellipsized(cell, widths[i])
                parts.append(isLast ? fitted : fitted.padding(toLength: widths[i], withPad: " ", startingAt: 0))
            }
            return parts.joined(separator: "  ")
        }
        var text = style.legend ? line(header.map { $0.uppercased() }) + "\n" : ""
        for row in rows { text += line(row) + "\n" }
        if style.legend, let footer { text += "\n" + footer + "\n" }
        Terminal.standardOutput(text)
    }

    /// Bytes in the units machinectl uses (B, K, M, G, T with one decimal), or "-" when unknown.
    static func size(_ bytes: UInt64?) -> String {
        guard let bytes else { return "-" }
        let units = ["B", "K", "M", "G", "T", "P"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes)B" : String(format: "%.1f%@", value, units[unit])
    }
}
