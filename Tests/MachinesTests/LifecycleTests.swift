import Foundation
import Testing
import TestSupport
@testable import Machines

/// What the lifecycle verbs decide without a running machine: which signals each init gets,
/// old records still read, the machine's cgroup found from its leader's, the OS's name.
@Suite("Machine lifecycle values")
struct LifecycleTests {
    @Test func eachInitGetsItsOwnSignals() {
        let rtmin = Signals.realtimeMinimum
        #expect(InitSystem.classify(resolvedPath: "/usr/lib/systemd/systemd") == .systemd)
        #expect(InitSystem.classify(resolvedPath: "/bin/busybox") == .busybox)
        #expect(InitSystem.classify(resolvedPath: "/sbin/init") == .sysvinit)
        #expect(InitSystem.classify(resolvedPath: "/sbin/openrc-init") == .other)
        #expect(InitSystem.systemd.signals(killSignal: SIGKILL) == LifecycleSignals(poweroff: rtmin + 4, reboot: SIGINT, halt: rtmin + 3))
        #expect(InitSystem.busybox.signals(killSignal: SIGKILL) == LifecycleSignals(poweroff: SIGUSR2, reboot: SIGTERM, halt: SIGUSR1))
        #expect(InitSystem.sysvinit.signals(killSignal: SIGKILL).poweroff == SIGPWR)
        #expect(InitSystem.sysvinit.signals(killSignal: SIGKILL).reboot == SIGINT)
        // nspawn and machinectl send systemd's signals to any booted container.
        #expect(InitSystem.other.signals(killSignal: SIGKILL) == InitSystem.systemd.signals(killSignal: SIGKILL))
        #expect(InitSystem.plain.signals(killSignal: SIGTERM) == LifecycleSignals(poweroff: SIGTERM, reboot: SIGTERM, halt: SIGTERM))
    }

    /// A record written before the reboot signal, init and QMP socket were kept still reads.
    @Test func olderRecordsStillRead() throws {
        let old = #"{"kind":"container","leader":42,"name":"old","root":"/srv/old","started":1700000000,"stopSignal":9,"supervisor":41}"#
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let record = try decoder.decode(MachineRecord.self, from: Data(old.utf8))
        #expect(record.stopSignal == 9)
        #expect(record.rebootSignal == nil && record.initSystem == nil && record.qmpSocket == nil)
        var new = record
        new.rebootSignal = SIGTERM
        new.initSystem = .busybox
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        #expect(try decoder.decode(MachineRecord.self, from: encoder.encode(new)) == new)
    }

    @Test func machineCgroupIsTheMachinesScope() {
        let v1 = """
            9:name=systemd:/imagectl-web.scope/init.scope
            5:devices:/imagectl-web.scope/payload
            0::/imagectl-web.scope
            """
        #expect(MachineControl.machineCgroup(processCgroups: v1, machine: "web", hierarchyExists: { _ in true })
                == "/sys/fs/cgroup/systemd/imagectl-web.scope")
        // Only the v2 tree (mounted at /sys/fs/cgroup).
        #expect(MachineControl.machineCgroup(processCgroups: "0::/a/imagectl-web.scope/x\n", machine: "web", hierarchyExists: { $0 == "" })
                == "/sys/fs/cgroup/a/imagectl-web.scope")
        // A leader outside the machine's scope is never taken for the machine: "all" must not
        // reach a host cgroup.
        #expect(MachineControl.machineCgroup(processCgroups: "9:name=systemd:/\n0::/\n", machine: "web", hierarchyExists: { _ in true }) == nil)
        #expect(MachineControl.machineCgroup(processCgroups: "9:name=systemd:/imagectl-other.scope\n", machine: "web", hierarchyExists: { _ in true }) == nil)
    }

    @Test func osReleaseNames() {
        #expect(MachineStatus.prettyName(osRelease: "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n") == "Debian GNU/Linux 12 (bookworm)")
        #expect(MachineStatus.prettyName(osRelease: "# comment\nNAME=Alpine\n") == "Alpine")
        #expect(MachineStatus.prettyName(osRelease: "PRETTY_NAME='A \\\"b\\\"'\n") == "A \\\"b\\\"")
        #expect(MachineStatus.prettyName(osRelease: "garbage") == nil)
    }

    @Test func unknownMachinesAreErrors() throws {
        let scratch = try TemporaryDirectory(prefix: "lifecycle")
        let control = MachineControl(registry: MachineRegistry(directory: scratch.appending("machines")))
        #expect(throws: MachineError.noSuchMachine("nosuch")) { try control.poweroff("nosuch") }
        #expect(throws: MachineError.noSuchMachine("nosuch")) { try control.stop("nosuch", timeout: 1) }
        #expect(throws: MachineError.noSuchMachine("nosuch")) { try control.status("nosuch") }
        #expect(throws: MachineError.invalidMachineName("../x")) { try control.terminate("../x") }
    }
}
