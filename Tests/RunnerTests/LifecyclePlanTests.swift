import Foundation
import Machines
import SystemPackage
import Testing
import TestSupport
@testable import Runner

/// What `imagectl run` decides at plan time for the machine's lifecycle: the init behind
/// argv[0] (symlinks resolved inside the tree, never outside it), its signals, and the name of
/// an ephemeral machine.
@Suite("Container lifecycle plan")
struct LifecyclePlanTests {
    /// A tree with /sbin/init -> ../bin/busybox, an absolute link that must resolve inside the
    /// tree, and a link that climbs out of it.
    static func makeTree() throws -> TemporaryDirectory {
        let scratch = try TemporaryDirectory(prefix: "lifecycle-plan")
        let fm = FileManager.default
        for directory in ["bin", "sbin", "etc", "usr/lib/systemd"] {
            try fm.createDirectory(atPath: scratch.appending(directory), withIntermediateDirectories: true)
        }
        fm.createFile(atPath: scratch.appending("bin/busybox"), contents: Data("x".utf8))
        fm.createFile(atPath: scratch.appending("usr/lib/systemd/systemd"), contents: Data("x".utf8))
        try fm.createSymbolicLink(atPath: scratch.appending("sbin/init"), withDestinationPath: "../bin/busybox")
        try fm.createSymbolicLink(atPath: scratch.appending("sbin/sd"), withDestinationPath: "/usr/lib/systemd/systemd")
        try fm.createSymbolicLink(atPath: scratch.appending("sbin/out"), withDestinationPath: "../../../../../../bin/sh")
        return scratch
    }

    @Test func argv0ResolvesInsideTheTree() throws {
        let tree = try Self.makeTree()
        let root = try FileDescriptor.open(tree.path, .readOnly, options: [.directory, .closeOnExec])
        defer { try? root.close() }
        #expect(Container.resolve("/sbin/init", in: root) == "/bin/busybox")
        // Absolute targets are the tree's own, not the host's.
        #expect(Container.resolve("/sbin/sd", in: root) == "/usr/lib/systemd/systemd")
        // ".." stops at the tree's root: the host's /bin/sh is never what is classified.
        #expect(Container.resolve("/sbin/out", in: root) == nil)
        #expect(Container.resolve("/no/such", in: root) == nil)
    }

    @Test func bootedBusyboxTreeGetsBusyboxSignals() throws {
        try Privileged.require(.fixture("busybox-tree"))
        var c = ContainerConfiguration(directory: Fixtures.path("busybox-tree") ?? "")
        c.boot = true
        let plan = try Container.plan(c, hostEnvironment: [:])
        #expect(plan.initSystem == .busybox)
        #expect(plan.lifecycleSignals == LifecycleSignals(poweroff: SIGUSR2, reboot: SIGTERM, halt: SIGUSR1))
        // SIGTERM to imagectl run asks for the power off, as `imagectl stop` does.
        #expect(plan.killSignal == SIGUSR2)
        c.killSignal = SIGHUP
        #expect(try Container.plan(c, hostEnvironment: [:]).killSignal == SIGHUP)
        // A plain payload: the kill signal for everything.
        var plain = ContainerConfiguration(directory: Fixtures.path("busybox-tree") ?? "")
        plain.command = ["/sbin/init"]
        let plainPlan = try Container.plan(plain, hostEnvironment: [:])
        #expect(plainPlan.initSystem == InitSystem.plain)
        #expect(plainPlan.lifecycleSignals == LifecycleSignals(poweroff: SIGKILL, reboot: SIGKILL, halt: SIGKILL))
    }

    @Test func bootedDebianTreeGetsSystemdSignals() throws {
        try Privileged.require(.fixture("debian-tree"))
        var c = ContainerConfiguration(directory: Fixtures.path("debian-tree") ?? "")
        c.boot = true
        let plan = try Container.plan(c, hostEnvironment: [:])
        #expect(plan.initSystem == .systemd)
        #expect(plan.killSignal == Signals.realtimeMinimum + 4)
        #expect(plan.lifecycleSignals.reboot == SIGINT)
    }

    @Test func ephemeralNamesGetARandomSuffix() throws {
        let a = Container.ephemeralMachineName("busybox-tree")
        let b = Container.ephemeralMachineName("busybox-tree")
        #expect(a != b)
        #expect(a.hasPrefix("busybox-tree-") && a.count == "busybox-tree-".count + 16)
        #expect(a.dropFirst("busybox-tree-".count).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        // A long base is shortened so that the name stays valid.
        let long = Container.ephemeralMachineName(String(repeating: "x", count: 64))
        #expect(long.count == 64 && MachineRecord.isValidName(long))
        // The plan applies it only when asked (run -x without a chosen name).
        let tree = try Self.makeTree()
        var c = ContainerConfiguration(directory: tree.path)
        c.command = ["/bin/busybox"]
        c.machineName = "tmpl"
        #expect(try Container.plan(c, hostEnvironment: [:]).machine == "tmpl")
        c.uniqueEphemeralName = true
        let plan = try Container.plan(c, hostEnvironment: [:])
        #expect(plan.machine.hasPrefix("tmpl-") && plan.machine.count == 21)
    }
}
