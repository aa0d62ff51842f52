import ArgumentParser
import Foundation
import Machines

/// `imagectl poweroff NAME`: asks a machine to power off (machinectl poweroff).
struct PowerOffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "poweroff",
        abstract: "Ask a running container or VM to power off (like machinectl poweroff).",
        discussion: """
            Sends a container's PID 1 its init's power-off signal (SIGRTMIN+4 for systemd, SIGUSR2 \
            for busybox init, SIGPWR for sysvinit; the kill signal for a plain payload), or presses \
            a VM's ACPI power button (QMP system_powerdown). Returns at once; the machine's \
            imagectl run (or imagectl vm) exits 0 once it has powered off. See imagectl stop to wait, with a \
            timeout. Exit status 1 when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    func run() throws {
        let (record, sent) = try MachineControl().poweroff(name)
        if !quiet { Terminal.standardError("Sent \(sent) to \(record.kind.rawValue) \(record.name) (PID \(record.leader)).\n") }
    }
}

/// `imagectl reboot NAME`: asks a machine to reboot (machinectl reboot).
struct RebootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reboot",
        abstract: "Ask a running container or VM to reboot (like machinectl reboot).",
        discussion: """
            Sends a container's PID 1 its init's reboot signal (SIGINT for systemd and sysvinit, \
            SIGTERM for busybox init; the kill signal for a plain payload), or ctrl-alt-delete to \
            a VM (QMP send-key). A container's imagectl run then exits 133, as nspawn does, for \
            its supervisor to start it again (imagectl-run@.service restarts on 133); a VM's \
            qemu runs with -no-reboot, so imagectl vm exits 133 when the guest reboots \
            (imagectl-vm@.service restarts on 133 too). Exit status 1 when no machine of that \
            name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    func run() throws {
        let (record, sent) = try MachineControl().reboot(name)
        if !quiet { Terminal.standardError("Sent \(sent) to \(record.kind.rawValue) \(record.name) (PID \(record.leader)).\n") }
    }
}

/// `imagectl terminate NAME`: ends a machine at once (machinectl terminate).
struct TerminateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terminate",
        abstract: "End a running container or VM at once (like machinectl terminate).",
        discussion: """
            SIGKILL to a container's PID 1 (the kernel then kills every process of its PID \
            namespace); QMP quit to a VM's qemu (SIGKILL when qemu does not answer). Nothing \
            inside gets to shut down. Returns once the machine has ended and its imagectl has \
            cleaned up. Exit status 1 when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    func run() throws {
        let record = try MachineControl().terminate(name)
        if !quiet { Terminal.standardError("Terminated \(record.kind.rawValue) \(record.name).\n") }
    }
}

/// `imagectl kill NAME [--signal=SIG] [--kill-whom=leader|all]` (machinectl kill).
struct KillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill",
        abstract: "Send a signal to a running machine's processes (like machinectl kill).",
        discussion: """
            Sends --signal (default SIGTERM) to the machine's leader (a container's PID 1, a VM's \
            qemu) and, with --kill-whom=all (the default, as machinectl), to every process of \
            a container's cgroup (imagectl-NAME.scope, found from the leader's /proc/PID/cgroup). \
            For a VM, all is the leader. Exit status 1 when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Option(name: [.customShort("s"), .customLong("signal")], help: ArgumentHelp("Signal to send: a name (SIGUSR1, USR1, SIGRTMIN+4) or number (default SIGTERM).", valueName: "signal"))
    var signal: String?

    @Option(name: .customLong("kill-whom"), help: ArgumentHelp("leader: the leader only; all: every process of the machine (default).", valueName: "leader|all"))
    var killWhom: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    func validate() throws {
        if let signal {
            do { _ = try Signals.parse(signal) } catch { throw ValidationError(error.description) }
        }
        if let killWhom, MachineControl.KillWhom(rawValue: killWhom) == nil {
            throw ValidationError("invalid --kill-whom \"\(killWhom)\" (leader or all)")
        }
    }

    func run() throws {
        let number = try signal.map { text throws(MachineError) in try Signals.parse(text) } ?? SIGTERM
        let whom = killWhom.flatMap(MachineControl.KillWhom.init(rawValue:)) ?? .all
        let (record, count) = try MachineControl().kill(name, signal: number, whom: whom)
        if !quiet {
            Terminal.standardError("Sent \(Signals.name(number)) to \(count) process\(count == 1 ? "" : "es") of \(record.kind.rawValue) \(record.name).\n")
        }
    }
}
