import Foundation

/// A client of qemu's machine protocol (QMP) on the VM's control socket
/// (`-qmp unix:PATH,server=on,wait=off`): the greeting, `qmp_capabilities`, then one command at
/// a time; events that arrive in between are skipped (nothing here waits for one).
public final class QMPClient {
    private let socket: QMPSocket
    let timeout: Double

    public init(path: String, timeout: Double = 10) throws(MachineError) {
        socket = try QMPSocket(path: path)
        self.timeout = timeout
        guard let greeting = try nextObject(), greeting["QMP"] != nil else { throw .qmp("no QMP greeting on \(path)") }
        _ = try execute("qmp_capabilities")
    }

    private func nextObject() throws(MachineError) -> [String: Any]? {
        guard let line = try socket.readLine(timeout: timeout) else { return nil }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw .qmp("unreadable reply: \(line.prefix(200))")
        }
        return object
    }

    /// Runs `command`; returns its "return" value. A QMP error is thrown with qemu's text.
    @discardableResult
    public func execute(_ command: String, arguments: [String: Any]? = nil) throws(MachineError) -> Any? {
        var request: [String: Any] = ["execute": command]
        if let arguments { request["arguments"] = arguments }
        guard let data = try? JSONSerialization.data(withJSONObject: request) else { throw .qmp("cannot encode \(command)") }
        try socket.send(String(decoding: data, as: UTF8.self))
        while true {
            guard let object = try nextObject() else {
                // qemu closes the socket as it exits after "quit": that is the answer.
                if command == "quit" { return nil }
                throw .qmp("qemu closed the connection during \(command)")
            }
            if object["event"] != nil { continue }
            if let error = object["error"] as? [String: Any] {
                throw .qmp("\(command): \(error["desc"] as? String ?? "failed")")
            }
            return object["return"]
        }
    }

    /// The keys of ctrl-alt-delete for `send-key`: a guest's request to reboot (systemd starts
    /// ctrl-alt-del.target, a reboot), the one reboot request a PC offers besides a reset.
    public static var ctrlAltDelete: [String: Any] { [
        "keys": [["type": "qcode", "data": "ctrl"], ["type": "qcode", "data": "alt"], ["type": "qcode", "data": "delete"]],
    ] }
}

/// One line qemu sends on a QMP connection (qemu's docs/interop/qmp-spec: one JSON object per
/// line): the greeting, an asynchronous event, or the reply to a command.
public enum QMPMessage: Equatable, Sendable {
    case greeting
    case event(QMPEvent)
    /// A command's reply: its "id" (if the command had one) and, for a failure, qemu's text.
    case reply(id: String?, error: String?)

    /// Parses one line; anything that is not a JSON object of one of those three shapes is an
    /// error (qemu never sends such a line, so it means the peer is not qemu's QMP).
    public static func parse(_ line: String) throws(MachineError) -> QMPMessage {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw .qmp("unreadable message: \(line.prefix(200))")
        }
        if object["QMP"] != nil { return .greeting }
        if let name = object["event"] as? String {
            return .event(QMPEvent(name: name, data: object["data"] as? [String: Any] ?? [:]))
        }
        let id = object["id"] as? String
        if let error = object["error"] as? [String: Any] {
            return .reply(id: id, error: error["desc"] as? String ?? "failed")
        }
        if object.keys.contains("return") { return .reply(id: id, error: nil) }
        throw .qmp("unexpected message: \(line.prefix(200))")
    }
}

/// An asynchronous QMP event. Only what imagectl acts on is kept: the name, and for SHUTDOWN
/// why qemu is stopping (qemu 4.0+ sends `"data": {"guest": BOOL, "reason": CAUSE}`).
public struct QMPEvent: Equatable, Sendable {
    public var name: String
    /// SHUTDOWN's reason; nil for other events (and for a SHUTDOWN without one, from a qemu
    /// older than 4.0).
    public var shutdownCause: QMPShutdownCause?

    public init(name: String, shutdownCause: QMPShutdownCause? = nil) {
        self.name = name
        self.shutdownCause = shutdownCause
    }

    init(name: String, data: [String: Any]) {
        self.name = name
        if name == "SHUTDOWN", let reason = data["reason"] as? String {
            shutdownCause = QMPShutdownCause(reason: reason)
        }
    }
}

/// Why qemu stops: the `reason` of its SHUTDOWN event (qemu's ShutdownCause), grouped by what a
/// user is told. qemu runs with -no-reboot under imagectl, so a reboot is a SHUTDOWN too.
public enum QMPShutdownCause: Equatable, Sendable {
    /// guest-shutdown: the guest powered off (ACPI S5: `systemctl poweroff`, the power button).
    case guestPoweroff
    /// guest-reset: the guest rebooted (or reset itself: a panic with panic=N).
    case guestReset
    /// guest-panic: the guest said it panicked (pvpanic).
    case guestPanic
    /// host-qmp-system-reset: a QMP `system_reset` (a hard reset from the host).
    case hostReset
    /// host-qmp-quit: a QMP `quit` (imagectl terminate, stop after its timeout).
    case hostQuit
    /// host-signal: qemu got SIGTERM, SIGINT or SIGHUP.
    case hostSignal
    /// host-ui: qemu's own user interface ended it (`^A x` on the native console).
    case hostUI
    /// Any other reason (host-error, subsystem-reset, snapshot-load, none, or one newer than
    /// this list), kept as qemu spelled it.
    case other(String)

    public init(reason: String) {
        switch reason {
        case "guest-shutdown": self = .guestPoweroff
        case "guest-reset": self = .guestReset
        case "guest-panic": self = .guestPanic
        case "host-qmp-system-reset": self = .hostReset
        case "host-qmp-quit": self = .hostQuit
        case "host-signal": self = .hostSignal
        case "host-ui": self = .hostUI
        default: self = .other(reason)
        }
    }
}

/// The QMP connection `imagectl vm` keeps to its own qemu, beside the socket that `imagectl
/// poweroff`, `stop` and `status` use (a qemu QMP server serves one client at a time, so the
/// runner holding that one would lock them out): qemu connects to this listening socket as a
/// client while it starts (`-chardev socket,path=PATH -mon chardev=...,mode=control`), so the
/// runner sees every event from the first, in particular SHUTDOWN, which says how the guest
/// ended. Not thread-safe: one thread at a time uses it.
public final class QMPMonitor {
    private let listener: QMPListener
    private var socket: QMPSocket?

    /// Listens at `path` (a new socket file, mode 0600; removed once qemu connected, or by
    /// `close()`).
    public init(listeningAt path: String) throws(MachineError) {
        listener = try QMPListener(path: path)
    }

    public var path: String { listener.path }

    /// Accepts the connection of qemu (PID `qemu`) and negotiates QMP capabilities. false
    /// when qemu did not connect: `stillWaiting` returned false (qemu ended) or `timeout`
    /// seconds passed.
    public func connect(qemu pid: Int32, timeout: Double, stillWaiting: () -> Bool) throws(MachineError) -> Bool {
        guard let socket = try listener.accept(from: pid, timeout: timeout, stillWaiting: stillWaiting) else { return false }
        listener.close()
        self.socket = socket
        guard let greeting = try socket.readLine(timeout: 30), try QMPMessage.parse(greeting) == .greeting else {
            throw .qmp("no QMP greeting from qemu on \(listener.path)")
        }
        try send("qmp_capabilities", id: "capabilities")
        // Until capabilities are negotiated qemu sends no event, so the next line is the reply.
        guard let line = try socket.readLine(timeout: 30) else { throw .qmp("qemu closed its QMP connection") }
        if case .reply(_, let error?) = try QMPMessage.parse(line) { throw .qmp("qmp_capabilities: \(error)") }
        return true
    }

    /// Sends a command without waiting for the reply (it comes through `readAvailable`).
    public func send(_ command: String, arguments: [String: Any]? = nil, id: String? = nil) throws(MachineError) {
        guard let socket else { throw .qmp("not connected") }
        var request: [String: Any] = ["execute": command]
        if let arguments { request["arguments"] = arguments }
        if let id { request["id"] = id }
        guard let data = try? JSONSerialization.data(withJSONObject: request) else { throw .qmp("cannot encode \(command)") }
        try socket.send(String(decoding: data, as: UTF8.self))
    }

    /// The connection's descriptor, to poll(2) beside others; nil before `connect`.
    public var descriptor: Int32? { socket?.descriptor }

    /// The messages one read brings (call when `descriptor` is readable), or nil once qemu
    /// closed the connection (it does as it exits).
    public func readAvailable() throws(MachineError) -> [QMPMessage]? {
        guard let socket else { return nil }
        guard let lines = try socket.readAvailable() else { return nil }
        return try lines.filter { !$0.isEmpty }.map { line throws(MachineError) in try QMPMessage.parse(line) }
    }

    public func close() {
        listener.close()
        socket = nil
    }
}
