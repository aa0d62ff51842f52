import Foundation
import LinuxSystem
#if canImport(Glibc)
import Glibc
#endif

/// machinectl's lifecycle verbs over the registry: poweroff, reboot, stop (poweroff, then
/// terminate when a timeout passes), terminate, kill and status, for containers (signals to
/// the leader, the ones its init understands: `InitSystem`) and VMs (QMP requests to qemu).
/// The leader is always reached through a pidfd opened while the registry entry is live, so a
/// PID recycled after the machine ended is never signalled.
public struct MachineControl: Sendable {
    public let registry: MachineRegistry

    /// Seconds `stop` (and a SIGTERM to `imagectl run`) waits for a power off before it
    /// terminates the machine: systemd's default stop timeout.
    public static let defaultStopTimeout: Double = 90

    public init(registry: MachineRegistry = MachineRegistry()) { self.registry = registry }

    /// How `stop` ended the machine.
    public enum StopOutcome: Equatable, Sendable {
        /// The machine ended by itself after the power-off request (the guest or init did).
        case poweredOff
        /// The timeout passed; it was terminated (SIGKILL, or QMP quit for a VM).
        case terminated(after: Double)
    }

    public enum KillWhom: String, Sendable, CaseIterable {
        case leader, all
    }

    /// The record and its leader, opened while the entry is live (looked up again afterwards).
    private func open(_ name: String) throws(MachineError) -> (MachineRecord, LeaderHandle) {
        guard MachineRecord.isValidName(name) else { throw .invalidMachineName(name) }
        guard let record = registry.lookup(name) else { throw .noSuchMachine(name) }
        let leader: LeaderHandle
        do throws(LeaderHandle.Failure) {
            leader = try LeaderHandle(record.leader)
        } catch {
            throw failure(error, name: name, "cannot open the leader \(record.leader) of \(name)")
        }
        guard let again = registry.lookup(name), again.leader == record.leader, again.supervisor == record.supervisor else {
            throw .noSuchMachine(name)
        }
        return (record, leader)
    }

    /// A leader that is gone is a machine that is not running any more.
    private func failure(_ failure: LeaderHandle.Failure, name: String, _ what: String) -> MachineError {
        switch failure {
        case .gone: .noSuchMachine(name)
        case .failed(let code): .registry("\(what): \(MachineError.errnoText(code))")
        }
    }

    private func send(_ signal: Int32, to leader: LeaderHandle, of record: MachineRecord) throws(MachineError) {
        do throws(LeaderHandle.Failure) {
            try leader.send(signal)
        } catch {
            throw failure(error, name: record.name, "cannot send \(Signals.name(signal)) to \(record.name) (PID \(record.leader))")
        }
    }

    private func qmp(_ record: MachineRecord) throws(MachineError) -> QMPClient? {
        guard record.kind == .vm, let path = record.qmpSocket else { return nil }
        return try QMPClient(path: path)
    }

    /// What a request was, for the caller's message ("SIGRTMIN+4", "ACPI power button").
    public typealias Sent = String

    /// Asks the machine to power off: its init's power-off signal, or the VM's ACPI power button
    /// (QMP system_powerdown). Returns what was sent.
    @discardableResult
    public func poweroff(_ name: String) throws(MachineError) -> (MachineRecord, Sent) {
        let (record, leader) = try open(name)
        return (record, try requestPoweroff(record, leader))
    }

    private func requestPoweroff(_ record: MachineRecord, _ leader: LeaderHandle) throws(MachineError) -> Sent {
        if let client = try qmp(record) {
            try client.execute("system_powerdown")
            return "an ACPI power-button press"
        }
        try send(record.stopSignal, to: leader, of: record)
        return Signals.name(record.stopSignal)
    }

    /// Asks the machine to reboot: its init's reboot signal, or ctrl-alt-delete to a VM.
    @discardableResult
    public func reboot(_ name: String) throws(MachineError) -> (MachineRecord, Sent) {
        let (record, leader) = try open(name)
        if let client = try qmp(record) {
            try client.execute("send-key", arguments: QMPClient.ctrlAltDelete)
            return (record, "ctrl-alt-delete")
        }
        guard let signal = record.rebootSignal, record.kind == .container else {
            throw .unsupported("machine \(name) was started by an imagectl that does not say how to reboot it")
        }
        try send(signal, to: leader, of: record)
        return (record, Signals.name(signal))
    }

    /// Ends the machine at once: SIGKILL to a container's PID 1 (the kernel then kills every
    /// process of its PID namespace), QMP quit to qemu. Waits up to `wait` seconds for the end.
    @discardableResult
    public func terminate(_ name: String, wait: Double = 10) throws(MachineError) -> MachineRecord {
        let (record, leader) = try open(name)
        try terminate(record, leader)
        _ = leader.waitForExit(seconds: wait)
        waitForUnregistration(record, seconds: wait)
        return record
    }

    private func terminate(_ record: MachineRecord, _ leader: LeaderHandle) throws(MachineError) {
        if let client = try? qmp(record) {
            // quit: qemu exits at once but closes its disk images properly, unlike SIGKILL.
            _ = try? client.execute("quit")
            if leader.waitForExit(seconds: 5) { return }
        }
        try send(SIGKILL, to: leader, of: record)
    }

    /// Powers the machine off and waits up to `timeout` seconds for it to end; then terminates
    /// it. Returns once the leader ended and its imagectl removed the machine's entry (so its
    /// mounts and cgroups are gone too).
    public func stop(_ name: String, timeout: Double) throws(MachineError) -> (MachineRecord, StopOutcome) {
        let (record, leader) = try open(name)
        let start = MonotonicClock.now
        _ = try requestPoweroff(record, leader)
        let outcome: StopOutcome
        if leader.waitForExit(seconds: timeout) {
            outcome = .poweredOff
        } else {
            try terminate(record, leader)
            _ = leader.waitForExit(seconds: 10)
            outcome = .terminated(after: MonotonicClock.now - start)
        }
        waitForUnregistration(record, seconds: 10)
        return (record, outcome)
    }

    /// Once the leader ended its imagectl cleans up (unmounts, removes cgroups) and removes the
    /// entry: wait for that, so that "stopped" means nothing of the machine is left.
    private func waitForUnregistration(_ record: MachineRecord, seconds: Double) {
        let deadline = MonotonicClock.now + seconds
        while MonotonicClock.now < deadline {
            guard let entry = registry.lookup(record.name), entry.supervisor == record.supervisor, entry.leader == record.leader else { return }
            usleep(20_000)
        }
    }

    /// Sends `signal` to the leader, or to every process of a container's cgroup (`all`).
    /// Returns how many processes it reached.
    @discardableResult
    public func kill(_ name: String, signal: Int32, whom: KillWhom) throws(MachineError) -> (MachineRecord, Int) {
        let (record, leader) = try open(name)
        guard whom == .all, record.kind == .container else {
            try send(signal, to: leader, of: record)
            return (record, 1)
        }
        guard let text = try? CgroupProcesses.readText("/proc/\(record.leader)/cgroup"),
              let directory = Self.machineCgroup(processCgroups: text, machine: name,
                                                 hierarchyExists: { FileSystem.exists("/sys/fs/cgroup/" + $0 + "/cgroup.procs") }) else {
            throw .registry("cannot find the cgroup of \(name) from /proc/\(record.leader)/cgroup")
        }
        // The others first: a container's PID 1 that dies of the signal takes its whole PID
        // namespace with it, and they would not get the signal they were sent.
        var count = 0
        for pid in Set(CgroupProcesses.pids(under: directory)) where pid != record.leader {
            if CgroupProcesses.send(signal, to: pid) { count += 1 }
        }
        try send(signal, to: leader, of: record)
        return (record, count + 1)
    }

    /// The host directory of a container's cgroup, from its leader's /proc/PID/cgroup: in the
    /// named systemd v1 hierarchy when there is one (every process of the container is in it),
    /// else the v2 tree; cut at the machine's `imagectl-NAME.scope` (systemd inside moves
    /// itself to init.scope below it). `hierarchyExists` tells whether a mount (relative to
    /// /sys/fs/cgroup: "systemd", "unified", "") is there.
    static func machineCgroup(processCgroups text: String, machine: String, hierarchyExists: (String) -> Bool) -> String? {
        var named: String?
        var unified: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/"), !fields[2].split(separator: "/").contains("..") else { continue }
            if fields[1] == "name=systemd" { named = String(fields[2]) }
            if fields[0] == "0" && fields[1].isEmpty { unified = String(fields[2]) }
        }
        // Only ever the machine's own scope: a leader found elsewhere (not a container of
        // imagectl's) must not turn "all" into every process of some host cgroup.
        func cut(_ path: String) -> String? {
            let components = path.split(separator: "/")
            guard let scope = components.firstIndex(of: Substring("imagectl-\(machine).scope")) else { return nil }
            return "/" + components[...scope].joined(separator: "/")
        }
        if let named, hierarchyExists("systemd"), let path = cut(named) { return "/sys/fs/cgroup/systemd" + path }
        if let unified, let path = cut(unified) {
            if hierarchyExists("unified") { return "/sys/fs/cgroup/unified" + path }
            if hierarchyExists("") { return "/sys/fs/cgroup" + path }
        }
        return nil
    }
}

extension MachineControl {
    /// The status of a running machine (`open` checks that its leader still runs).
    public func status(_ name: String) throws(MachineError) -> MachineStatus {
        let (record, _) = try open(name)
        return MachineStatus(record)
    }
}
