import Foundation
import Glibc
import Testing
import TestSupport
@testable import Runner

/// Each device-policy mechanism alone, as root: a host shell joins a cgroup that has only the
/// cgroup v1 devices list, or only the cgroup v2 BPF program, and tries the devices. On a hybrid
/// host both run, since either would otherwise hide the other.
@Suite("Device cgroup", .serialized)
struct DeviceCgroupTests {
    /// imagectl's (the test process's) cgroup in a hierarchy: "" for the v2 tree.
    static func ownPath(controller: String) throws -> String {
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[1] == controller else { continue }
            return fields[2] == "/" ? "" : String(fields[2])
        }
        throw CgroupMissing()
    }
    struct CgroupMissing: Error {}

    /// Where the v2 tree is: its own mount on a hybrid host, /sys/fs/cgroup on a unified one.
    static var unifiedMount: String {
        FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup"
    }

    /// Moves a shell into `cgroup` and reports what it could do with each device; a block node
    /// b 7:0 (a loop device) is made in `scratch` beforehand, outside any restriction.
    static func probe(cgroup: String, scratch: TemporaryDirectory) throws -> Tool.Result {
        let loop = scratch.appending("loop0")
        #expect(mknod(loop, S_IFBLK | 0o600, dev_t(7 << 8)) == 0)
        let script = """
            echo $$ > '\(cgroup)/cgroup.procs' || exit 99
            head -c1 /dev/zero | od -An -tx1 | tr -d ' '
            echo x > /dev/null && echo null-written
            head -c0 /dev/loop-control && echo loop-control-opened
            head -c1 '\(loop)' >/dev/null && echo loop-read
            mknod '\(scratch.appending("null"))' c 1 3 && echo mknod-null
            mknod '\(scratch.appending("loop1"))' b 7 1 && echo mknod-loop
            true
            """
        return try Tool.run("sh", ["-c", script])
    }

    static func expectClosed(_ result: Tool.Result) {
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "00\nnull-written\nmknod-null\n", "\(result.stdout)")
        #expect(result.stderr.contains("cannot open '/dev/loop-control' for reading: Operation not permitted"), "\(result.stderr)")
        #expect(result.stderr.contains("loop0' for reading: Operation not permitted"), "\(result.stderr)")
        #expect(result.stderr.contains("loop1: Operation not permitted"), "\(result.stderr)")
    }

    @Test func v1DevicesListAlone() throws {
        try Privileged.require(.root, .cgroupHierarchy("/sys/fs/cgroup/devices"))
        let scope = "/sys/fs/cgroup/devices\(try Self.ownPath(controller: "devices"))/imagectl-devtest-\(getpid()).scope"
        #expect(mkdir(scope, 0o755) == 0)
        defer { CgroupTree.remove([scope]) }
        try DeviceCgroup.applyList(.nspawnDefault, to: scope)
        #expect(mkdir(scope + "/payload", 0o755) == 0)
        let list = try String(contentsOfFile: scope + "/payload/devices.list", encoding: .utf8)
        #expect(list.split(separator: "\n").map(String.init).sorted() == DevicePolicy.nspawnDefault.devicesListLines.sorted())
        let scratch = try TemporaryDirectory(prefix: "devices-v1")
        Self.expectClosed(try Self.probe(cgroup: scope + "/payload", scratch: scratch))
        // A child cannot widen its parent's list, even for root.
        let widen = try Tool.run("sh", ["-c", "echo a > '\(scope)/payload/devices.allow'"])
        #expect(widen.status != 0)
        #expect(try String(contentsOfFile: scope + "/payload/devices.list", encoding: .utf8) == list)
    }

    @Test func v2ProgramAlone() throws {
        try Privileged.require(.root, .cgroupHierarchy(Self.unifiedMount))
        let scope = "\(Self.unifiedMount)\(try Self.ownPath(controller: ""))/imagectl-devtest-\(getpid()).scope"
        #expect(mkdir(scope, 0o755) == 0)
        defer { CgroupTree.remove([scope]) }
        try DeviceCgroup.attachProgram(.nspawnDefault, to: scope)
        let scratch = try TemporaryDirectory(prefix: "devices-v2")
        Self.expectClosed(try Self.probe(cgroup: scope, scratch: scratch))
    }

    /// The scopes in every hierarchy, the policy in effect on the devices one, a leftover of a
    /// killed run replaced, and nothing left after remove().
    @Test func treeCoversEveryHierarchyAndGoes() throws {
        try Privileged.require(.root)
        let machine = "devtest-\(getpid())"
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        let layout = CgroupTree.parseLayout(text, unifiedMountExists: FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs"))
        let hierarchies = try CgroupTree.hierarchies(layout, controllerPaths: CgroupTree.controllerPaths(text))
        let first = try CgroupTree.create(machine: machine, devices: .nspawnDefault)
        #expect(first.scopes == hierarchies.map { $0.parent + "/imagectl-\(machine).scope" })
        for scope in first.scopes { #expect(FileManager.default.fileExists(atPath: scope + "/cgroup.procs"), "\(scope)") }
        if let devices = hierarchies.first(where: { $0.role == .devices }) {
            let payload = devices.parent + "/imagectl-\(machine).scope/payload"
            #expect(first.directories.contains(payload))
            #expect(try String(contentsOfFile: payload + "/devices.list", encoding: .utf8).contains("c 136:* rw"))
        }
        // Left behind (as by a kill -9 of imagectl): the next start replaces the empty scopes.
        let second = try CgroupTree.create(machine: machine, devices: .nspawnDefault)
        #expect(second.scopes == first.scopes)
        second.remove()
        for scope in first.scopes { #expect(!FileManager.default.fileExists(atPath: scope), "\(scope)") }
    }
}
