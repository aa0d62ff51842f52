import Foundation

/// What a long operation (import, export, clone, verify, pull) reports while it runs, in one of
/// four forms:
/// - `bar`: one line on a terminal, redrawn in place (`\r`) and fitted to the terminal's width
///   (phase, bar, percent where the total is known, bytes, rate, ETA); when a phase ends the bar
///   is replaced by its final line.
/// - `lines`: for a pipe or file: nothing while the operation runs, only each phase's final line
///   (never a `\r`).
/// - `json`: JSON lines, one object per event (begin, progress, end, note, done).
/// - `quiet`: nothing at all.
///
/// Called from worker threads (decompressors, the download thread, verify's hashing threads):
/// every mutable field is guarded by `lock`. `add`/`advance` are called once per chunk on hot
/// paths, so they only take the lock, add, and read a monotonic clock; drawing is rate-limited.
public final class ProgressReporter: @unchecked Sendable {
    public enum Style: Sendable { case bar, lines, json, quiet }

    public let style: Style
    private let write: @Sendable (String) -> Void
    private let columns: @Sendable () -> Int
    private let lock = NSLock()

    private struct Phase {
        var name: String
        var started: UInt64
        var done: UInt64 = 0
        var total: UInt64?
    }
    private var phase: Phase?
    private var starts: [String: UInt64] = [:]
    private var lastDraw: UInt64 = 0
    private var barShown = false

    /// Redraws at most this often (nanoseconds): 10 a second on a terminal, 2 as JSON.
    private var interval: UInt64 { style == .json ? 500_000_000 : 100_000_000 }

    /// `write` receives finished text: lines end in "\n", the bar starts with "\r". `columns` is
    /// asked for the width before each redraw (so a resized terminal is followed).
    public init(style: Style, columns: @escaping @Sendable () -> Int = { 80 }, write: @escaping @Sendable (String) -> Void) {
        self.style = style
        self.columns = columns
        self.write = write
    }

    /// A reporter that says nothing.
    public static var silent: ProgressReporter { ProgressReporter(style: .quiet) { _ in } }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    // MARK: events

    /// A phase starts (`detail`: on what, e.g. a URL or a file); `total` in bytes when known.
    public func begin(_ name: String, _ detail: String? = nil, total: UInt64? = nil) {
        lock.withLock {
            let now = Self.now()
            phase = Phase(name: name, started: now, total: total)
            starts[name] = now
            lastDraw = 0
            if style == .json {
                var object: [String: Any] = ["event": "begin", "phase": name]
                if let detail { object["detail"] = detail }
                if let total { object["total"] = total }
                emitJSON(object)
            }
        }
    }

    /// `bytes` more are done in the current phase (thread-safe; cheap when nothing is drawn).
    public func add(_ bytes: UInt64) {
        lock.withLock {
            guard style == .bar || style == .json, phase != nil else { return }
            phase!.done &+= bytes
            drawIfDue(force: false)
        }
    }

    /// The current phase's total became known (or changed).
    public func setTotal(_ total: UInt64?) {
        lock.withLock { phase?.total = total }
    }

    /// Bytes done so far in phase `name` (absolute); starts the phase if it is not the current one.
    public func advance(_ name: String, done: UInt64, total: UInt64?, force: Bool = false) {
        lock.withLock {
            guard style == .bar || style == .json else { return }
            if phase?.name != name {
                phase = Phase(name: name, started: starts[name] ?? Self.now(), total: total)
            }
            phase!.done = done
            phase!.total = total
            drawIfDue(force: force)
        }
    }

    /// A phase is complete: its final line (with bytes, time and rate when `bytes` is given).
    public func end(_ name: String, _ detail: String, bytes: UInt64? = nil) {
        lock.withLock {
            let now = Self.now()
            let started = starts[name] ?? phase?.started ?? now
            let seconds = Double(now &- started) / 1e9
            if phase?.name == name { phase = nil }
            switch style {
            case .quiet: return
            case .json:
                var object: [String: Any] = ["event": "end", "phase": name, "detail": detail,
                                             "seconds": (seconds * 1000).rounded() / 1000]
                if let bytes { object["bytes"] = bytes }
                emitJSON(object)
            case .lines, .bar:
                var figures = ""
                if let bytes {
                    figures = " (\(Self.size(bytes)) in \(String(format: "%.1f", seconds)) s"
                    if seconds > 0.05 { figures += ", \(Self.size(UInt64(Double(bytes) / seconds)))/s" }
                    figures += ")"
                }
                var text = "\(name): \(detail)\(figures)"
                if style == .bar {
                    clearBar()
                    // On a terminal the line fits its width: the detail (a path, usually) gives
                    // way first, from its start, so that the figures stay.
                    let room = columns() - 1
                    let detailRoom = room - name.count - 2 - figures.count
                    if text.count > room, detailRoom >= 8 {
                        text = "\(name): ...\(detail.suffix(detailRoom - 3))\(figures)"
                    }
                    text = Self.fit(text, to: room + 1)
                }
                write(text + "\n")
            }
        }
    }

    /// Something worth saying that is not an error (a retry, a mirror, a cache hit).
    public func note(_ message: String) {
        lock.withLock {
            switch style {
            case .quiet: return
            case .json: emitJSON(["event": "note", "message": message])
            case .lines, .bar:
                clearBar()
                write("note: \(message)\n")
            }
        }
    }

    /// The last line of a JSON stream: the operation's result.
    public func result(_ fields: [String: Any]) {
        lock.withLock {
            guard style == .json else { return }
            var object = fields
            object["event"] = "done"
            emitJSON(object)
        }
    }

    /// Removes the bar (before an error line is printed, say).
    public func finish() {
        lock.withLock { clearBar() }
    }

    // MARK: drawing (called with the lock held)

    private func drawIfDue(force: Bool) {
        let now = Self.now()
        guard force || now &- lastDraw >= interval, let phase else { return }
        lastDraw = now
        let elapsed = max(0.001, Double(now &- phase.started) / 1e9)
        let rate = Double(phase.done) / elapsed
        var eta: Double?
        if let total = phase.total, total >= phase.done, rate > 0, elapsed >= 0.5 { eta = Double(total - phase.done) / rate }
        switch style {
        case .json:
            var object: [String: Any] = ["event": "progress", "phase": phase.name, "bytes": phase.done, "rate": Int(rate)]
            if let total = phase.total {
                object["total"] = total
                if total > 0 { object["percent"] = Int(min(100, Double(phase.done) * 100 / Double(total))) }
            }
            if let eta { object["eta"] = Int(eta.rounded()) }
            emitJSON(object)
        case .bar:
            write("\r" + Self.barLine(phase: phase.name, done: phase.done, total: phase.total, rate: rate, eta: eta,
                                      width: columns()) + "\u{1B}[K")
            barShown = true
        case .lines, .quiet:
            break
        }
    }

    private func clearBar() {
        if barShown {
            write("\r\u{1B}[K")
            barShown = false
        }
    }

    private func emitJSON(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    // MARK: layout

    /// The bar for a terminal `width` columns wide, never longer than `width - 1` (the last
    /// column is left free: writing there makes some terminals wrap). What does not fit is
    /// dropped, least useful first: the total, the bar itself, the ETA, the rate; the phase name
    /// is cut last.
    static func barLine(phase: String, done: UInt64, total: UInt64?, rate: Double, eta: Double?, width: Int) -> String {
        let room = max(1, width - 1)
        let known = total.map { $0 > 0 } ?? false
        let percent = known ? String(format: "%3d%%", Int(min(100, Double(done) * 100 / Double(total!)))) : nil
        let rateText = Self.size(UInt64(rate)) + "/s"
        let etaText = eta.map { "ETA " + Self.duration($0) }
        let doneText = Self.size(done)
        let totalText = known ? "\(doneText) / \(Self.size(total!))" : doneText
        // Field sets, richest first.
        let candidates: [[String?]] = [
            [percent, totalText, rateText, etaText],
            [percent, doneText, rateText, etaText],
            [percent, doneText, rateText],
            [percent, doneText],
            [percent ?? doneText],
        ]
        func line(_ fields: [String?], minimumBar: Int) -> String? {
            let tail = fields.compactMap { $0 }.joined(separator: "  ")
            let plain = phase + " " + tail
            let barRoom = room - plain.count - 3  // " [" + "]"
            guard known, barRoom >= minimumBar else { return plain.count <= room && minimumBar == 0 ? plain : nil }
            let barWidth = min(barRoom, 40)
            let filled = Int(min(1, Double(done) / Double(total!)) * Double(barWidth))
            return phase + " [" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "] " + tail
        }
        // A bar of at least 10 columns with as many fields as fit; else the fields alone.
        for fields in candidates.prefix(3) { if let text = line(fields, minimumBar: 10) { return text } }
        for fields in candidates { if let text = line(fields, minimumBar: 0) { return text } }
        return String((phase + " " + (percent ?? doneText)).prefix(room))
    }

    /// Cuts `text` to `width - 1` columns (with "..." when cut). Text here is the final line of a
    /// phase; anything but ASCII counts as one column per character, a near enough measure.
    static func fit(_ text: String, to width: Int) -> String {
        let room = max(4, width - 1)
        guard text.count > room else { return text }
        return String(text.prefix(room - 3)) + "..."
    }

    /// Bytes in binary units with one decimal, as the bar prints them.
    public static func size(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(min(seconds, 359_999).rounded())
        return total >= 3600 ? String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60)
                             : String(format: "%d:%02d", total / 60, total % 60)
    }
}
