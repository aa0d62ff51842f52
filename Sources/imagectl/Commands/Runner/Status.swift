import ArgumentParser
import Foundation
import Dissect
import Machines
import Runner

/// `imagectl status NAME`: what is known about a running machine (machinectl status).
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running container's or VM's state (like machinectl status).",
        discussion: """
            Shows the machine's class (container or vm), state, leader PID and command, the \
            directory or image it runs from, when it started, its UUID, and for a container the \
            OS named by its os-release (read through /proc/LEADER/root) and its init with the \
            signals imagectl poweroff and reboot send, and its addresses on the links imagectl \
            set up (-n, --network-zone=, a VM's tap). Exit status 1 \
            when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        let status = try MachineControl().status(name)
        if output.json {
            // A container's entry adds how its root is protected (the verity trust) and its user
            // namespace, which `machines --json` leaves out with the rest of the registry's fields.
            let record = ContainerRegistry().list().first { $0.machine.name == name }
            try output.printJSON(StatusJSON(status: status, verity: record?.verity, userNamespace: record?.userNamespace))
            return
        }
        let formatter = DateFormatter()
        formatter.dateFormat = "EEE yyyy-MM-dd HH:mm:ss zzz"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let ago = max(0, Int(Date().timeIntervalSince(status.since)))
        let comm = (try? String(contentsOfFile: "/proc/\(status.leader)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var lines = [status.name + (status.uuid.map { " - " + $0.uuidString.lowercased() } ?? "")]
        func field(_ label: String, _ value: String?) {
            guard let value else { return }
            lines.append(String(repeating: " ", count: max(0, 12 - label.count)) + label + ": " + value)
        }
        field("State", status.state)
        field("Since", "\(formatter.string(from: status.since)); \(Self.span(ago)) ago")
        field("Leader", "\(status.leader)" + (comm.map { " (\($0))" } ?? ""))
        field("Class", status.class)
        field("Supervisor", "\(status.supervisor) (imagectl)")
        field(status.class == "vm" ? "Image" : "Root", status.root)
        field("Address", status.addresses.flatMap { $0.isEmpty ? nil : $0.joined(separator: ", ") })
        field("OS", status.os)
        if let initSystem = status.initSystem {
            var text = initSystem.rawValue
            if let poweroff = status.poweroffSignal { text += "; poweroff \(poweroff)" }
            if let reboot = status.rebootSignal { text += ", reboot \(reboot)" }
            field("Init", text)
        }
        Terminal.standardOutput(lines.joined(separator: "\n") + "\n")
    }

    /// The status, plus a machine's verity trust and user namespace when it has them.
    struct StatusJSON: Encodable {
        var status: MachineStatus
        var verity: [VerityTrust]?
        var userNamespace: ResolvedUserNamespace?

        func encode(to encoder: Encoder) throws {
            try status.encode(to: encoder)
            enum Key: String, CodingKey { case verity, userNamespace }
            var c = encoder.container(keyedBy: Key.self)
            try c.encodeIfPresent(verity, forKey: .verity)
            try c.encodeIfPresent(userNamespace, forKey: .userNamespace)
        }
    }

    /// "5s", "3min 2s", "2h 5min".
    static func span(_ seconds: Int) -> String {
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)min \(seconds % 60)s" }
        return "\(seconds / 3600)h \(seconds % 3600 / 60)min"
    }
}
