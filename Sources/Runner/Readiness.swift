import Foundation

/// One sd_notify(3) datagram from the container, reduced to what imagectl acts on: lines
/// ("\n"-separated; "\r" too, as nspawn splits) of NAME=VALUE, of which READY=1, STOPPING=1 and
/// STATUS= matter.
public struct NotifyMessage: Equatable, Sendable {
    public var ready = false
    public var stopping = false
    /// The last STATUS= line's value.
    public var status: String?

    public init(ready: Bool = false, stopping: Bool = false, status: String? = nil) {
        self.ready = ready
        self.stopping = stopping
        self.status = status
    }

    public init(parsing text: String) {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
            if line == "READY=1" { ready = true }
            else if line == "STOPPING=1" { stopping = true }
            else if line.hasPrefix("STATUS=") { status = String(line.dropFirst("STATUS=".count)) }
        }
    }

    public var isEmpty: Bool { !ready && !stopping && status == nil }
}

/// What `imagectl run` tells its own service manager ($NOTIFY_SOCKET), as systemd-nspawn does:
/// "STATUS=Container running." once the payload runs, READY=1 at that moment (--notify-ready=no)
/// or when the payload sends READY=1 (--notify-ready=yes); the payload's STATUS= as
/// "STATUS=Container running: TEXT", and its STOPPING=1.
public struct ReadinessPolicy: Sendable {
    public var notifyReady: Bool

    public init(notifyReady: Bool) { self.notifyReady = notifyReady }

    /// The message sent when the payload was started (exec'd and registered).
    public var startMessage: String {
        notifyReady ? "STATUS=Container running." : "READY=1\nSTATUS=Container running."
    }

    /// The message to send for one from the container, or nil for none. With --notify-ready=no
    /// READY=1 went out at the start already and is not repeated.
    public func forward(_ message: NotifyMessage) -> String? {
        var lines: [String] = []
        if message.ready && notifyReady { lines.append("READY=1") }
        if message.stopping { lines.append("STOPPING=1") }
        if let status = message.status {
            // One line: a newline would start a new assignment in the upward message.
            let flat = status.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
            lines.append("STATUS=Container running: \(flat)")
        }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }
}
