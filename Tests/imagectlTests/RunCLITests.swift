import Foundation
import Testing
import TestSupport

/// `imagectl run` end to end: each check is made from inside a container, as SECURITY.md 17-23
/// asks. The busybox fixture is copied (it is read-only) or used with -x.
@Suite("imagectl run", .serialized)
struct RunCLITests {
    /// A private copy of the busybox tree.
    final class Tree: @unchecked Sendable {
        // Immutable after init; deinit removes the directory.
        let scratch: TemporaryDirectory
        let path: String
        init(name: String = "bbtree") throws {
            scratch = try TemporaryDirectory(prefix: "run-test")
            path = scratch.appending(name)
            let source = Fixtures.path("busybox-tree") ?? ""
            let r = try Tool.run("cp", ["-a", source, path])
            guard r.status == 0 else { throw TreeError(text: r.stderr) }
        }
    }
    struct TreeError: Error { var text: String }

    static func requireContainer() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
    }

    /// The test process's own bounding set: a container cannot have more than its host.
    static func hostBoundingSet() -> UInt64 {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") }
        return line.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
    }

    func run(_ tree: Tree, _ arguments: [String], options: [String] = []) throws -> Tool.Result {
        try Imagectl.run(["run", "-q", "-D", tree.path] + options + arguments)
    }

    @Test func trueAndExitCodes() throws {
        try Self.requireContainer()
        let tree = try Tree()
        #expect(try run(tree, ["/bin/true"]).status == 0)
        let seven = try run(tree, ["sh", "-c", "exit 7"])
        #expect(seven.status == 7)
        #expect(seven.stderr.isEmpty)
        let missing = try run(tree, ["/bin/no-such-program"])
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: ") && missing.stderr.contains("no-such-program"))
    }

    @Test func payloadIsPID1AndStubInitWithAsPID2() throws {
        try Self.requireContainer()
        let tree = try Tree()
        #expect(try run(tree, ["sh", "-c", "echo $$; cat /proc/1/comm; true"]).stdout == "1\nsh\n")
        let pid2 = try run(tree, ["sh", "-c", "echo $$"], options: ["-a"])
        #expect(pid2.status == 0)
        #expect(pid2.stdout == "2\n")
        // The stub init passes the payload's status on.
        let nine = try run(tree, ["sh", "-c", "exit 9"], options: ["-a"])
        #expect(nine.status == 9, "status \(nine.status): \(nine.stderr)")
    }

    @Test func hostnameIsTheMachineName() throws {
        try Self.requireContainer()
        let tree = try Tree(name: "bbhost")
        #expect(try run(tree, ["hostname"]).stdout == "bbhost\n")
        #expect(try run(tree, ["hostname"], options: ["-M", "other"]).stdout == "other\n")
        #expect(try run(tree, ["hostname"], options: ["-M", "other", "--hostname", "hn.example"]).stdout == "hn.example\n")
    }

    @Test func procSysIsReadOnlyAndKernelFilesMasked() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let write = try run(tree, ["sh", "-c", "echo evil > /proc/sys/kernel/hostname"])
        #expect(write.status != 0)
        #expect(write.stderr.contains("Read-only"))
        #expect(try String(contentsOfFile: "/proc/sys/kernel/hostname", encoding: .utf8) != "evil\n")
        // The host's kallsyms has content; inside, the mask (the container's /dev/null on a
        // read-only nodev bind) cannot be opened at all.
        let host = try Tool.run("sh", ["-c", "head -c 100 /proc/kallsyms | wc -c"])
        #expect(host.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != "0")
        let inside = try run(tree, ["sh", "-c", "for f in kallsyms timer_list; do cat /proc/$f > /dev/null 2>&1 && echo readable || echo masked; done"])
        #expect(inside.stdout == "masked\nmasked\n")
        // Every masked file that exists on the host is the container's /dev/null (1:3) inside.
        let masked = ["kallsyms", "kcore", "keys", "sysrq-trigger", "timer_list"].filter { FileManager.default.fileExists(atPath: "/proc/\($0)") }
        let stat = try run(tree, ["stat", "-c", "%F %t:%T"] + masked.map { "/proc/\($0)" })
        #expect(stat.stdout == String(repeating: "character special file 1:3\n", count: masked.count))
        // Without CAP_SYS_ADMIN the read-only /proc/sys cannot be unmounted.
        let umount = try run(tree, ["sh", "-c", "umount /proc/sys && echo unmounted"], options: ["--drop-capability=CAP_SYS_ADMIN"])
        #expect(!umount.stdout.contains("unmounted"))
    }

    @Test func onlyStandardDescriptorsReachThePayload() throws {
        try Self.requireContainer()
        let tree = try Tree()
        // fd 7 is open (not close-on-exec) in imagectl; the payload must not have it.
        let r = try Tool.run("sh", ["-c", "exec 7</etc/hostname; exec \"$0\" run -q -D \"$1\" sh -c 'ls /proc/$$/fd; readlink /proc/$$/cwd'", Imagectl.binary, tree.path])
        #expect(r.status == 0)
        #expect(r.stdout == "0\n1\n2\n/root\n")
    }

    @Test func hostBinaryCannotBeWrittenThroughProc() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let before = try Data(contentsOf: URL(fileURLWithPath: Imagectl.binary)).count
        // With -a, PID 1 is the stub init, a clone of imagectl: /proc/1/exe is the host binary.
        let r = try run(tree, ["sh", "-c", "echo overwritten >> /proc/1/exe && echo wrote; : > /proc/1/exe && echo truncated"], options: ["-a"])
        #expect(!r.stdout.contains("wrote"))
        #expect(!r.stdout.contains("truncated"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: Imagectl.binary)).count == before)
    }

    @Test func symlinkedProcCannotRedirectTheMount() throws {
        try Self.requireContainer()
        let tree = try Tree()
        // /proc in the image points at an absolute path that exists on the host and, empty, in
        // the image. Resolved in the image's root, proc lands on the image's directory.
        // (Not under /tmp: the container's /tmp is a tmpfs that would hide it.)
        let host = try TemporaryDirectory(prefix: "run-hostdir", under: "/var/tmp")
        try FileManager.default.removeItem(atPath: tree.path + "/proc")
        try FileManager.default.createDirectory(atPath: tree.path + host.path, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: tree.path + "/proc", withDestinationPath: host.path)
        let r = try run(tree, ["sh", "-c", "cat /proc/1/comm; cat /proc/kallsyms > /dev/null 2>&1 || echo masked"])
        #expect(r.status == 0)
        #expect(r.stdout == "sh\nmasked\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: host.path).isEmpty)
        // A /proc pointing out of the tree with ".." stays inside it too.
        try FileManager.default.removeItem(atPath: tree.path + "/proc")
        try FileManager.default.createSymbolicLink(atPath: tree.path + "/proc", withDestinationPath: "../../../../../../proc-elsewhere")
        try FileManager.default.createDirectory(atPath: tree.path + "/proc-elsewhere", withIntermediateDirectories: true)
        #expect(try run(tree, ["cat", "/proc-elsewhere/1/comm"]).stdout == "cat\n")
    }

    @Test func hostDevNodesKeepOwnerAndMode() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let before = try FileManager.default.attributesOfItem(atPath: "/dev/null")
        let r = try run(tree, ["sh", "-c", "chown 1:1 /dev/null /dev/zero && chmod 600 /dev/null /dev/zero && stat -c '%u %a' /dev/null"])
        #expect(r.stdout == "1 600\n")
        let after = try FileManager.default.attributesOfItem(atPath: "/dev/null")
        #expect(after[.ownerAccountID] as? Int == before[.ownerAccountID] as? Int)
        #expect(after[.posixPermissions] as? Int == before[.posixPermissions] as? Int)
        #expect(after[.posixPermissions] as? Int == 0o666)
    }

    @Test func ephemeralLeavesTheSourceUnchanged() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let r = try run(tree, ["sh", "-c", "echo hi > /written && rm /etc/passwd && cat /written"], options: ["-x"])
        #expect(r.status == 0)
        #expect(r.stdout == "hi\n")
        #expect(!FileManager.default.fileExists(atPath: tree.path + "/written"))
        #expect(FileManager.default.fileExists(atPath: tree.path + "/etc/passwd"))
        #expect(try run(tree, ["sh", "-c", "test -e /written"], options: ["-x"]).status == 1)
        // The read-only fixture itself works with -x.
        let fixture = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("busybox-tree") ?? "", "sh", "-c", "touch /x && echo ok"])
        #expect(fixture.stdout == "ok\n")
        #expect(!FileManager.default.fileExists(atPath: (Fixtures.path("busybox-tree") ?? "") + "/x"))
    }

    @Test func templateCreatesTheTargetOnce() throws {
        try Self.requireContainer()
        let scratch = try TemporaryDirectory(prefix: "run-template")
        let target = scratch.appending("made")
        let template = Fixtures.path("busybox-tree") ?? ""
        let first = try Imagectl.run(["run", "-q", "--template", template, "-D", target, "sh", "-c", "echo one > /marker"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try String(contentsOfFile: target + "/marker", encoding: .utf8) == "one\n")
        #expect(!FileManager.default.fileExists(atPath: template + "/marker"))
        // The target exists now: the template is not copied again, the marker survives.
        let second = try Imagectl.run(["run", "-q", "--template", template, "-D", target, "cat", "/marker"])
        #expect(second.stdout == "one\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["made"])
    }

    @Test func identityEnvironmentAndWorkingDirectory() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let r = try run(tree, ["sh", "-c", "echo $container $FOO $HOME; id -u; id -g; pwd"],
                        options: ["-E", "FOO=bar", "-u", "user", "--uuid", "0123456789abcdef0123456789abcdef"])
        #expect(r.stdout == "imagectl bar /home/user\n1000\n1000\n/home/user\n")
        let uuid = try run(tree, ["sh", "-c", "echo $container_uuid"], options: ["--uuid", "0123456789abcdef0123456789abcdef"])
        #expect(uuid.stdout == "01234567-89ab-cdef-0123-456789abcdef\n")
        #expect(try run(tree, ["sh", "-c", "pwd"], options: ["--chdir=/etc"]).stdout == "/etc\n")
        #expect(try run(tree, ["id", "-u"], options: ["-u", "4242"]).stdout == "4242\n")
    }

    @Test func securityDefaults() throws {
        try Self.requireContainer()
        let tree = try Tree()
        // nspawn's 26 default capabilities (systemd-nspawn(1), --capability=). In the default
        // user namespace the set starts full (setns gives its root every capability there);
        // without one it cannot exceed the host's own.
        let expected: UInt64 = [30, 29, 0, 1, 2, 3, 4, 15, 5, 28, 9, 27, 10, 11, 13, 31, 6, 8, 7, 21, 22, 18, 23, 19, 24, 26]
            .reduce(0) { $0 | (1 << UInt64($1)) }
        let caps = try run(tree, ["sh", "-c", "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"])
        #expect(caps.stdout == "CapBnd:\t\(String(format: "%016llx", expected))\nNoNewPrivs:\t0\n")
        let hostRoot = try run(tree, ["sh", "-c", "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status"], options: ["--private-users=no"])
        #expect(hostRoot.stdout == "CapBnd:\t\(String(format: "%016llx", expected & Self.hostBoundingSet()))\nNoNewPrivs:\t0\n")
        let nnp = try run(tree, ["grep", "NoNewPrivs", "/proc/self/status"], options: ["--no-new-privileges=yes"])
        #expect(nnp.stdout == "NoNewPrivs:\t1\n")
        let dropped = try run(tree, ["grep", "CapBnd", "/proc/self/status"], options: ["--drop-capability=all", "--capability=CAP_CHOWN"])
        // As in nspawn, drops apply after additions.
        #expect(dropped.stdout == "CapBnd:\t0000000000000000\n")
        let chownOnly = try run(tree, ["grep", "CapBnd", "/proc/self/status"], options: ["--drop-capability=CAP_SYS_ADMIN,CAP_SYS_BOOT"])
        #expect(chownOnly.stdout == "CapBnd:\t\(String(format: "%016llx", expected & ~(1 << 21) & ~(1 << 22)))\n")
        // The same tree under systemd-nspawn (no user namespace) has the same bounding set.
        if Tool.path("systemd-nspawn") != nil {
            let peer = try Tool.run("systemd-nspawn", ["-q", "--register=no", "--keep-unit", "-D", tree.path, "grep", "CapBnd", "/proc/self/status"])
            #expect(peer.stdout.replacingOccurrences(of: "\r", with: "") == hostRoot.stdout.split(separator: "\n").first.map { String($0) + "\n" })
        }
        // seccomp: swapoff of a missing file is ENOENT for the kernel, EPERM under the filter.
        let host = try Tool.run(tree.path + "/bin/busybox", ["swapoff", "/no-such-swap"])
        #expect(host.stderr.contains("No such file"))
        let swap = try run(tree, ["busybox", "swapoff", "/no-such-swap"])
        #expect(swap.status != 0)
        #expect(swap.stderr.contains("Operation not permitted"))
    }

    @Test func privateNetworkHasOnlyLoopback() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let r = try run(tree, ["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"], options: ["--private-network"])
        #expect(r.stdout.hasPrefix("lo\n"))
        #expect(r.stdout.split(separator: "\n").count == 3)
        #expect(r.stdout.hasSuffix("0x9\n"))  // IFF_UP | IFF_LOOPBACK
    }

    @Test func readOnlyRoot() throws {
        try Self.requireContainer()
        let tree = try Tree()
        let r = try run(tree, ["sh", "-c", "touch /new-file"], options: ["--read-only"])
        #expect(r.status != 0)
        #expect(!FileManager.default.fileExists(atPath: tree.path + "/new-file"))
        // /tmp and /run are tmpfs, writable, and gone afterwards.
        #expect(try run(tree, ["sh", "-c", "touch /tmp/a /run/b"], options: ["--read-only"]).status == 0)
    }

    @Test func terminationSignalIsForwardedOnceAndReported() throws {
        try Self.requireContainer()
        let tree = try Tree()
        func start(_ extra: [String]) throws -> (Process, URL) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Imagectl.binary)
            process.arguments = ["run", "-q", "-D", tree.path] + extra + ["sleep", "30"]
            let err = tree.scratch.appending("stderr-\(UUID().uuidString)")
            #expect(FileManager.default.createFile(atPath: err, contents: nil))
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            return (process, URL(fileURLWithPath: err))
        }
        // Default kill signal: SIGKILL to PID 1, reported as 128+9 with a message. The signal
        // goes once the payload runs (imagectl handles signals from before the clone on).
        let (a, aErr) = try start([])
        #expect(ProcessTree.waitForDescendant(of: a.processIdentifier, named: "sleep"))
        a.terminate()
        a.waitUntilExit()
        #expect(a.terminationReason == .exit)
        #expect(a.terminationStatus == 137)
        #expect(try String(contentsOf: aErr, encoding: .utf8).contains("terminated by signal SIGKILL"))
        // -a forwards the kill signal to the payload, which dies of it.
        let (b, _) = try start(["-a", "--kill-signal=SIGTERM"])
        #expect(ProcessTree.waitForDescendant(of: b.processIdentifier, named: "sleep"))
        b.terminate()
        b.waitUntilExit()
        #expect(b.terminationStatus == 128 + 15)
    }

    @Test func badOptionsAreUsageErrors() throws {
        for arguments in [["run", "-D", "/tmp", "--kill-signal=SIGBOGUS", "true"],
                          ["run", "-D", "/tmp", "--capability=CAP_NOPE", "true"],
                          ["run", "-D", "/tmp", "--no-new-privileges=maybe", "true"],
                          ["run", "-D", "/tmp", "--chdir=relative", "true"],
                          ["run", "-D", "/tmp", "-b", "-a"],
                          ["run", "-D", "/tmp", "--bogus", "true"],
                          ["run", "-D", "/tmp/x", "-x", "--template", "/tmp", "true"],
                          ["run", "true"]] {
            let r = try Imagectl.run(arguments)
            #expect(r.status == 2, "\(arguments)")
            #expect(r.stderr.hasPrefix("error: "), "\(arguments)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(arguments): \(r.stderr)")
        }
    }

    @Test func bootsDebianToPoweroff() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let tree = Fixtures.path("debian-tree") ?? ""
        let start = Date()
        let r = try Tool.run("timeout", ["120", Imagectl.binary, "run", "-q", "-x", "-D", tree, "-b", "systemd.unit=poweroff.target"])
        #expect(r.status == 0, "\(r.stdout.suffix(2000)) \(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 120)
        // Without a terminal the booted system's /dev/console is still relayed (read-only), so
        // its boot and shutdown messages reach imagectl's output, as with nspawn.
        #expect(r.stdout.contains("Welcome to"), "\(r.stdout.suffix(2000))")
        #expect(r.stdout.contains("System Power Off"), "\(r.stdout.suffix(2000))")
        // SIGTERM to imagectl sends a booted systemd SIGRTMIN+4: it powers off, and that is exit 0.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["run", "-q", "-x", "-D", tree, "-b"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Once journald runs, systemd is in its main loop and acts on SIGRTMIN+4.
        #expect(ProcessTree.waitForDescendant(of: process.processIdentifier, named: "systemd-journal", timeout: 60))
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        // The same tree runs a command and reports its status.
        #expect(try Imagectl.run(["run", "-q", "-x", "-D", tree, "/bin/true"]).status == 0)
        #expect(try Imagectl.run(["run", "-q", "-x", "-D", tree, "sh", "-c", "exit 7"]).status == 7)
    }
}
