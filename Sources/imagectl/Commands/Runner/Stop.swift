import ArgumentParser
import Foundation
import Machines

/// `imagectl stop NAME`: asks a running machine to shut down (like `machinectl poweroff`).
struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop a running container or virtual machine.",
        discussion: """
            Sends the machine's stop signal to its leader: SIGRTMIN+4 (systemd's poweroff \
            request) to PID 1 of a container started with --boot, the kill signal (--kill-signal, \
            default SIGKILL) to PID 1 of any other container, SIGTERM to the qemu of a VM. Returns \
            once the signal was sent; the imagectl that runs the machine exits when it has ended. \
            Exit status 1 when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).")
    var name: String

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    func run() throws {
        let record = try MachineRegistry().stop(name)
        if !quiet {
            Terminal.standardError("Sent \(Signals.name(record.stopSignal)) to \(record.kind.rawValue) \(record.name) (PID \(record.leader)).\n")
        }
    }
}
