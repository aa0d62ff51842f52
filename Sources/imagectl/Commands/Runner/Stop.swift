import ArgumentParser
import Foundation
import Machines

/// `imagectl stop NAME [--timeout=SEC]`: powers a machine off and waits for it, terminating it
/// when the timeout passes (what systemd does to a service: stop, then SIGKILL).
struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Power off a running container or VM and wait; terminate it after a timeout.",
        discussion: """
            Asks the machine to power off, as imagectl poweroff does (the container init's \
            power-off signal: SIGRTMIN+4 for systemd, SIGUSR2 for busybox init, SIGPWR for \
            sysvinit, the kill signal for a plain payload; the ACPI power button of a VM, through \
            qemu's QMP socket), then waits for it to end. When it has not ended after --timeout \
            seconds (default 90, systemd's stop timeout) it is terminated (SIGKILL to the \
            container's PID 1; QMP quit to qemu). Returns once the machine is gone and its \
            imagectl has cleaned up, and says which way it went: "powered off" or "terminated \
            after N s" (a plain payload, which has no power-off: "stopped").
            Exit status 0 either way; 1 when no machine of that name is running.
            """)

    @Argument(help: "Name of the running machine (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Option(name: .customLong("timeout"), help: ArgumentHelp("Seconds to wait for the power-off before terminating (default 90; \"s\" suffix allowed).", valueName: "sec"))
    var timeout: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status message.")
    var quiet = false

    /// "5", "2.5", "30s": seconds.
    static func parseSeconds(_ text: String) -> Double? {
        let number = text.hasSuffix("s") ? String(text.dropLast()) : text
        guard let value = Double(number), value.isFinite, value >= 0, value <= 86400 else { return nil }
        return value
    }

    func validate() throws {
        if let timeout, Self.parseSeconds(timeout) == nil {
            throw ValidationError("invalid --timeout \"\(timeout)\" (seconds, 0 to 86400)")
        }
    }

    func run() throws {
        let seconds = timeout.flatMap(Self.parseSeconds) ?? MachineControl.defaultStopTimeout
        let (record, outcome) = try MachineControl().stop(name, timeout: seconds)
        guard !quiet else { return }
        switch outcome {
        case .poweredOff where record.kind == .container && (record.initSystem ?? .plain) == .plain:
            // A plain payload has no power-off: it ended of the kill signal it was sent.
            Terminal.standardError("Machine \(name) stopped (\(Signals.name(record.stopSignal))).\n")
        case .poweredOff:
            Terminal.standardError("Machine \(name) powered off.\n")
        case .terminated(let after):
            Terminal.standardError("Machine \(name) did not power off; terminated after \(Int(after.rounded())) s.\n")
        }
    }
}
