import Foundation
import Glibc
import Testing
import TestSupport

/// SECURITY.md 24 and 25 from inside a container as root without a user namespace (the case with
/// the most power inside): host devices off nspawn's list cannot be made or opened, a fresh
/// cgroup v1 mount can neither widen the device list nor reach a release_agent, and the
/// container's cgroups go with it.
@Suite("imagectl run device policy", .serialized)
struct RunDevicesCLITests {
    typealias Tree = RunCLITests.Tree

    func run(_ tree: Tree, _ script: String, options: [String] = []) throws -> Tool.Result {
        try Imagectl.run(["run", "-q", "-D", tree.path, "--private-users=no"] + options + ["sh", "-c", script])
    }

    /// A device node put into the tree from the host, where nothing restricts mknod.
    func hostMade(_ tree: Tree, _ name: String, _ mode: mode_t, major: UInt32, minor: UInt32) {
        #expect(mknod(tree.path + "/" + name, mode | 0o600, dev_t(major << 8 | minor)) == 0, "mknod \(name)")
    }

    @Test func hostDevicesOffTheListAreClosed() throws {
        try RunCLITests.requireContainer()
        let tree = try Tree()
        hostMade(tree, "hl", S_IFBLK, major: 7, minor: 0)
        hostMade(tree, "lc", S_IFCHR, major: 10, minor: 237)  // /dev/loop-control
        let result = try run(tree, """
            busybox mknod /root/.hl b 7 0 && echo made-loop
            busybox dd if=/hl of=/dev/null bs=512 count=1 2>&1 | busybox grep -q 'not permitted' && echo loop-denied
            busybox cat /lc 2>&1 | busybox grep -q 'not permitted' && echo loop-control-denied
            busybox mknod /root/.lc c 10 237 && echo made-loop-control
            busybox head -c2 /dev/zero | busybox od -An -tx1 | busybox tr -d ' '
            busybox head -c8 /dev/urandom | busybox wc -c
            busybox head -c1 /dev/random | busybox wc -c
            echo x > /dev/null && echo null-written
            echo x > /dev/full || echo full-is-full
            busybox mknod /root/.null c 1 3 && echo x > /root/.null && echo made-null
            true
            """)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "loop-denied\nloop-control-denied\n0000\n8\n1\nnull-written\nfull-is-full\nmade-null\n",
                "\(result.stdout)")
        #expect(result.stderr.contains("/root/.hl: Operation not permitted"), "\(result.stderr)")
        #expect(result.stderr.contains("/root/.lc: Operation not permitted"), "\(result.stderr)")
        #expect(result.stderr.contains("No space left on device"), "\(result.stderr)")
    }

    @Test func boundHostDeviceIsOpenAsBound() throws {
        try RunCLITests.requireContainer()
        try Privileged.require(.loopDevices, .tool("losetup"))
        let tree = try Tree()
        let backing = tree.scratch.appending("disk")
        _ = FileManager.default.createFile(atPath: backing, contents: Data("device-bytes".utf8) + Data(count: 4096))
        // Writable itself: only the read-only bind's "r" rule refuses the write inside.
        let attach = try Tool.run("losetup", ["--find", "--show", backing])
        try #require(attach.status == 0, "\(attach.stderr)")
        let loop = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tool.run("losetup", ["-d", loop]) }
        try FileManager.default.createDirectory(atPath: tree.path + "/mnt", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: tree.path + "/mnt/ro", contents: nil)
        _ = FileManager.default.createFile(atPath: tree.path + "/mnt/full", contents: nil)
        let result = try run(tree, """
            busybox head -c12 /mnt/ro; echo
            busybox dd if=/dev/zero of=/mnt/ro bs=1 count=1 conv=notrunc 2>&1 | busybox grep -q 'not permitted' && echo write-denied
            busybox head -c2 /mnt/full | busybox od -An -tx1 | busybox tr -d ' '
            """, options: ["--bind-ro=\(loop):/mnt/ro", "--bind=/dev/full:/mnt/full"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "device-bytes\nwrite-denied\n0000\n", "\(result.stdout) \(result.stderr)")
    }

    @Test func freshCgroupMountsCannotWidenOrReachReleaseAgent() throws {
        try RunCLITests.requireContainer()
        let tree = try Tree()
        hostMade(tree, "hl", S_IFBLK, major: 7, minor: 0)
        let v1Devices = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/devices/cgroup.procs")
        let v1Pids = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/cgroup.procs")
        let result = try run(tree, """
            busybox mkdir -p /tmp/d /tmp/p
            if busybox mount -t cgroup -o devices none /tmp/d; then
                echo devices-mounted
                echo a > /tmp/d/devices.allow || echo widen-refused
                busybox cat /tmp/d/devices.list | busybox grep -qx 'a \\*:\\* rwm' && echo list-open
            fi
            busybox dd if=/hl of=/dev/null bs=512 count=1 2>&1 | busybox grep -q 'not permitted' && echo loop-denied
            if busybox mount -t cgroup -o pids none /tmp/p; then
                echo pids-mounted
                busybox test -e /tmp/p/release_agent && echo pids-release-agent
            fi
            for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do busybox test -e $f && echo "found $f"; done
            busybox cat /proc/self/cgroup | busybox grep -v ':/$'
            true
            """)
        #expect(result.status == 0, "\(result.stderr)")
        var expected = ""
        if v1Devices { expected += "devices-mounted\nwiden-refused\n" }
        expected += "loop-denied\n"
        if v1Pids { expected += "pids-mounted\n" }
        // Every line of /proc/self/cgroup is the namespace's "/": the container's own cgroups.
        #expect(result.stdout == expected, "\(result.stdout) \(result.stderr)")
    }

    @Test func scopesAreGoneAfterTheRun() throws {
        try RunCLITests.requireContainer()
        let tree = try Tree()
        let machine = "devscope\(getpid())"
        // While it runs, the host sees the container in imagectl-NAME.scope in every hierarchy
        // (the v1 devices one: in its payload child). The container signals it runs with a file;
        // its PID 1 is found through the scopes' cgroup.procs.
        let marker = tree.path + "/running"
        let script = """
            '\(Imagectl.binary)' run -q -D '\(tree.path)' --private-users=no -M \(machine) sh -c 'touch /running; sleep 2' &
            while [ ! -e '\(marker)' ]; do sleep 0.1; done
            pid=$(cat $(find /sys/fs/cgroup -maxdepth 7 -path '*/imagectl-\(machine).scope/*cgroup.procs') | head -n1)
            cat /proc/$pid/cgroup
            wait $!
            """
        let during = try Tool.run("sh", ["-c", script])
        #expect(during.status == 0, "\(during.stderr)")
        let lines = during.stdout.split(separator: "\n").filter { !$0.isEmpty }
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(line.contains("/imagectl-\(machine).scope"), "\(line)")
            if line.contains(":devices:") { #expect(line.hasSuffix("/imagectl-\(machine).scope/payload"), "\(line)") }
        }
        let find = try Tool.run("find", ["/sys/fs/cgroup", "-maxdepth", "6", "-name", "imagectl-\(machine).scope"])
        #expect(find.stdout.isEmpty, "\(find.stdout)")
    }
}
