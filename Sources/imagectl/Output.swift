import Foundation

/// Output helpers shared by every verb: JSON in one stable form, and aligned tables.
enum Output {
    /// Prints a value as JSON (sorted keys, ISO-8601 dates, one document followed by a newline).
    static func printJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(value)
        Terminal.standardOutput(String(decoding: data, as: UTF8.self) + "\n")
    }

    /// Prints rows as a table with left-aligned columns separated by two spaces. The header is
    /// printed in capitals, as machinectl does; `footer` (e.g. "3 images listed.") follows a blank
    /// line when given.
    static func printTable(header: [String], rows: [[String]], footer: String? = nil) {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (i, cell) in cells.enumerated() {
                let isLast = i == cells.count - 1
                parts.append(isLast ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0))
            }
            return parts.joined(separator: "  ")
        }
        var text = line(header.map { $0.uppercased() }) + "\n"
        for row in rows { text += line(row) + "\n" }
        if let footer { text += "\n" + footer + "\n" }
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
