import ArgumentParser
import Foundation
import Runner

/// `imagectl machines`: the running containers and VMs (like `machinectl list`).
struct MachinesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "machines",
        abstract: "List running containers and virtual machines (like machinectl list).",
        discussion: """
            Machines are registered by the imagectl process that runs them (imagectl run, \
            imagectl vm) in $IMAGECTL_RUNTIME_DIR/machines (default /run/imagectl/machines); an \
            entry whose imagectl died is dropped. Columns: machine name, class (container or vm), \
            the service that runs it, the leader's host PID (the container's PID 1 or qemu), and \
            the directory or image it runs from, and the container's addresses on its network links \
            (-n, --network-zone=). --json keys are the columns (machine, class, service, leader, \
            root, addresses), as machinectl list --json names its own; `imagectl status NAME --json` \
            has the rest.
            """)

    @OptionGroup var output: OutputOptions

    func run() throws {
        // Read as container records: a container's entry then keeps its root's verity trust,
        // user namespace and filter in --json; a VM's has none of those.
        let machines = ContainerRegistry().list()
        if output.json {
            try output.printJSON(machines.map {
                Row(machine: $0.name, class: $0.kind.rawValue, service: "imagectl", leader: $0.leader, root: $0.root,
                    addresses: $0.addresses.flatMap { $0.isEmpty ? nil : $0 })
            })
            return
        }
        if machines.isEmpty {
            if output.table.legend { Terminal.standardOutput("No machines.\n") }
            return
        }
        let rows = machines.map {
            [$0.name, $0.kind.rawValue, "imagectl", String($0.leader), $0.root ?? "-", $0.addresses?.joined(separator: ",") ?? "-"]
        }
        Output.printTable(header: ["machine", "class", "service", "leader", "root", "addresses"], rows: rows,
                          footer: "\(machines.count) machine\(machines.count == 1 ? "" : "s") listed.", style: output.table)
    }

    /// One machine: the table's columns, as machinectl list --json names its own; null where
    /// there is nothing. The addresses are an array, as in `status --json` (machinectl joins
    /// them into one string with newlines).
    struct Row: Encodable {
        var machine: String
        var `class`: String
        var service: String
        var leader: Int32
        var root: String?
        var addresses: [String]?

        func encode(to encoder: Encoder) throws {
            enum Key: String, CodingKey { case machine, `class`, service, leader, root, addresses }
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(machine, forKey: .machine)
            try c.encode(`class`, forKey: .class)
            try c.encode(service, forKey: .service)
            try c.encode(leader, forKey: .leader)
            try c.encode(root, forKey: .root)
            try c.encode(addresses, forKey: .addresses)
        }
    }
}
