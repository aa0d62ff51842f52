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
            (-n, --network-zone=).
            """)

    @OptionGroup var output: OutputOptions

    func run() throws {
        // Read as container records: a container's entry then keeps its root's verity trust,
        // user namespace and filter in --json; a VM's has none of those.
        let machines = ContainerRegistry().list()
        if output.json {
            try Output.printJSON(machines)
            return
        }
        let rows = machines.map {
            [$0.name, $0.kind.rawValue, "imagectl", String($0.leader), $0.root ?? "-", $0.addresses?.joined(separator: ",") ?? "-"]
        }
        Output.printTable(header: ["machine", "class", "service", "leader", "root", "addresses"], rows: rows,
                          footer: "\(machines.count) machine\(machines.count == 1 ? "" : "s") listed.")
    }
}
