import ArgumentParser
import Foundation
import ImageStore

// A busy image (locked by another process) makes the CLI exit 16.
extension ImageStore.Error: BusyReporting {}

extension StoreOptions {
    /// The store for this invocation: only `--root`/IMAGECTL_ROOT when given, else the system
    /// search path with /var/lib/machines as the pool.
    func openStore() throws -> ImageStore {
        try ImageStore(root: explicitRoot)
    }
}

/// Formatting shared by the store verbs.
enum StoreFormat {
    /// A date as systemd prints timestamps: "Sat 2026-11-21 20:10:03 UTC", in local time.
    static func date(_ date: Date?) -> String {
        guard let date else { return "-" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE yyyy-MM-dd HH:mm:ss zzz"
        return formatter.string(from: date)
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }

    /// Parses a size: a byte count with an optional K, M, G, T (or KiB...; powers of 1024) suffix.
    static func parseSize(_ text: String) -> UInt64? {
        var digits = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, UInt64)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                         ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        var factor: UInt64 = 1
        for (suffix, value) in units where digits.uppercased().hasSuffix(suffix.uppercased()) {
            digits = String(digits.dropLast(suffix.count))
            factor = value
            break
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let number = UInt64(digits) else { return nil }
        let (result, overflow) = number.multipliedReportingOverflow(by: factor)
        return overflow ? nil : result
    }
}

/// `--format` of the export verbs.
extension ExportCompression: ExpressibleByArgument {}
