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
