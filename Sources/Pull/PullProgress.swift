import Foundation

/// What a pull reports while it runs: a bar on a terminal (phase, percent, bytes, rate, ETA), one
/// line per phase otherwise, or JSON lines (one object per event) for programs.
public final class PullProgress: @unchecked Sendable {
    // Called from the download thread, the import thread and the side-file threads: all mutable
    // state is guarded by `lock`.
    public enum Style: Sendable { case bar, lines, json }

    public enum Phase: String, Sendable {
        case checksum, signature, download, sideFiles = "side-files", verify, commit
    }

    private let style: Style
    private let write: @Sendable (String) -> Void
    private let lock = NSLock()
    private var started: [Phase: Date] = [:]
    private var lastUpdate = Date.distantPast
    private var barShown = false

    /// `write` receives finished text (lines end in "\n"; the bar uses "\r").
    public init(style: Style, write: @escaping @Sendable (String) -> Void) {
        self.style = style
        self.write = write
    }

    /// A phase starts; `detail` says on what (a URL, a file name).
    func begin(_ phase: Phase, _ detail: String) {
        lock.withLock {
            started[phase] = Date()
            switch style {
            case .json: emitJSON(["event": "begin", "phase": phase.rawValue, "detail": detail])
            case .lines, .bar:
                clearBar()
                write("\(phase.rawValue): \(detail)\n")
            }
        }
    }

    /// Bytes done so far in a phase (throttled: the bar 5 times a second, JSON twice).
    func advance(_ phase: Phase, done: UInt64, total: UInt64?, force: Bool = false) {
        lock.withLock {
            let now = Date()
            let interval = style == .json ? 0.5 : 0.2
            guard force || now.timeIntervalSince(lastUpdate) >= interval else { return }
            lastUpdate = now
            let elapsed = max(0.001, now.timeIntervalSince(started[phase] ?? now))
            let rate = Double(done) / elapsed
            let eta: Double? = total.flatMap { total in rate > 0 && total >= done ? Double(total - done) / rate : nil }
            switch style {
            case .lines: break
            case .json:
                var object: [String: Any] = ["event": "progress", "phase": phase.rawValue, "bytes": done,
                                             "rate": Int(rate)]
                if let total { object["total"] = total }
                if let eta { object["eta"] = Int(eta.rounded()) }
                emitJSON(object)
            case .bar:
                var text = "\r\u{1B}[K\(phase.rawValue) "
                if let total, total > 0 {
                    let fraction = min(1, Double(done) / Double(total))
                    let width = 24
                    let filled = Int(fraction * Double(width))
                    text += "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
                    text += String(format: "%3d%% ", Int(fraction * 100))
                    text += "\(Self.size(done)) / \(Self.size(total))"
                } else {
                    text += Self.size(done)
                }
                text += "  \(Self.size(UInt64(rate)))/s"
                if let eta { text += "  ETA \(Self.duration(eta))" }
                write(text)
                barShown = true
            }
        }
    }

    /// A phase is complete.
    func end(_ phase: Phase, _ detail: String, bytes: UInt64? = nil) {
        lock.withLock {
            let elapsed = Date().timeIntervalSince(started[phase] ?? Date())
            switch style {
            case .json:
                var object: [String: Any] = ["event": "end", "phase": phase.rawValue, "detail": detail,
                                             "seconds": (elapsed * 1000).rounded() / 1000]
                if let bytes { object["bytes"] = bytes }
                emitJSON(object)
            case .lines, .bar:
                clearBar()
                var text = "\(phase.rawValue): \(detail)"
                if let bytes {
                    text += " (\(Self.size(bytes)) in \(String(format: "%.1f", elapsed)) s"
                    if elapsed > 0.05 { text += ", \(Self.size(UInt64(Double(bytes) / elapsed)))/s" }
                    text += ")"
                }
                write(text + "\n")
            }
        }
    }

    /// Something worth saying that is not an error (a retry, a mirror, a cache hit).
    func note(_ message: String) {
        lock.withLock {
            switch style {
            case .json: emitJSON(["event": "note", "message": message])
            case .lines, .bar:
                clearBar()
                write("note: \(message)\n")
            }
        }
    }

    /// The last line of a JSON progress stream.
    public func result(_ fields: [String: Any]) {
        lock.withLock {
            guard style == .json else { return }
            var object = fields
            object["event"] = "done"
            emitJSON(object)
        }
    }

    private func clearBar() {
        if barShown {
            write("\r\u{1B}[K")
            barShown = false
        }
    }

    private func emitJSON(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
                             : String(format: "%d:%02d", total / 60, total % 60)
    }
}
