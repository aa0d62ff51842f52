import Foundation
import Testing
import TestSupport

/// The escape-probe suite (SECURITY.md 17-25): fixtures/probes/escape-probe.c, built statically
/// and run as root inside a container, tries a host loop device, /dev/loop-control, fresh proc,
/// sysfs and cgroup mounts, /proc/sys and /sys remounts, release_agent, the devices list, module
/// and keyring calls, TIOCSTI, leaked descriptors, and /proc/N/exe of every imagectl process while
/// `imagectl shell` runs from a copy of the binary; the test adds the probes made from the command
/// line (--chdir through /proc/self/fd, a bind target behind a symlink). Each configuration prints
/// its count of probes and successes.
@Suite("escape probes", .serialized)
struct EscapeProbeCLITests {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// What the README names as open without a user namespace (--private-users=no): a fresh /proc
    /// or sysfs mount, or the given ones unmounted or remounted, reach host kernel settings, and
    /// the container's root (CAP_SYS_PTRACE over the host's user namespace) can open the
    /// executable of imagectl's processes in its PID namespace (writes to it stay refused while
    /// it runs: ETXTBSY).
    static let openWithoutUserNamespace: Set<String> = ["fresh-proc", "fresh-sysfs", "proc-sys-umount", "sysfs-remount", "host-executable"]

    struct Outcome {
        var probes: [String: (escaped: Bool, detail: String)] = [:]
        var summary: (run: Int, succeeded: Int)?
        var text: String

        var escaped: Set<String> { Set(probes.filter { $0.value.escaped }.map(\.key)) }
    }

    /// "probe NAME: blocked|ESCAPED (detail)" lines and the closing count.
    static func parse(_ text: String) -> Outcome {
        var outcome = Outcome(text: text)
        for line in text.split(separator: "\n") {
            if line.hasPrefix("probe "), let colon = line.firstIndex(of: ":") {
                let name = String(line[line.index(line.startIndex, offsetBy: 6)..<colon])
                let rest = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                outcome.probes[name] = (rest.hasPrefix("ESCAPED"), rest)
            } else if line.hasPrefix("escape probes: ") {
                let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
                if numbers.count == 2 { outcome.summary = (numbers[0], numbers[1]) }
            }
        }
        return outcome
    }

    /// The probe, compiled statically with the toolchain's clang (the busybox tree has no libc).
    static func buildProbe(into directory: String) throws -> String {
        let output = directory + "/escape-probe"
        let clang = ["/opt/swift/usr/bin/clang", "/usr/bin/clang", "/usr/bin/cc"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let clang else { throw Failure(description: "no C compiler for the escape probe") }
        let r = try Tool.run(clang, ["-static", "-O1", "-o", output, Fixtures.repositoryPath("probes/escape-probe.c")])
        guard r.status == 0 else { throw Failure(description: "building the probe: \(r.stderr)") }
        return output
    }

    /// Runs the probe as the payload of `run -a` (so PID 1 is imagectl's stub init) with
    /// `options`, while `imagectl shell` of a copy of the binary enters the container 20 times.
    static func probe(options: [String]) throws -> Outcome {
        let scratch = try TemporaryDirectory(prefix: "escape-probe")
        let tree = scratch.appending("tree")
        let copy = try Tool.run("cp", ["-a", "\(Fixtures.directory)/busybox-tree", tree])
        guard copy.status == 0 else { throw Failure(description: copy.stderr) }
        let probe = try buildProbe(into: scratch.path)
        _ = try Tool.run("cp", [probe, tree + "/escape-probe"])
        // A host file behind a loop device: the probe must not read its first bytes.
        let magic = "IMAGECTL-ESCAPE-PROBE-\(UUID().uuidString.prefix(8))"
        let backing = scratch.appending("host-secret.img")
        FileManager.default.createFile(atPath: backing, contents: Data(magic.utf8) + Data(count: 1 << 20))
        let attach = try Tool.run("losetup", ["--find", "--show", backing])
        guard attach.status == 0, let loop = Int(attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("/dev/loop".count))
        else { throw Failure(description: "losetup: \(attach.stderr)") }
        defer { _ = try? Tool.run("losetup", ["-d", "/dev/loop\(loop)"]) }
        // `shell` from another file than the supervising run, as after a package upgrade.
        let shellBinary = scratch.appending("imagectl-copy")
        _ = try Tool.run("cp", [Imagectl.binary, shellBinary])
        let machine = "probe-\(UUID().uuidString.prefix(8).lowercased())"
        let output = scratch.appending("probe-output")
        let script = """
            "$0" run -q -a -D "$1" -M "$2" \(options.map { "'\($0)'" }.joined(separator: " ")) /escape-probe \
              --loop "$5" --magic "$6" --watch-exe --ready /probe-ready --stop /probe-stop > "$3" 2>&1 &
            run=$!
            for i in $(seq 300); do [ -e "$1/probe-ready" ] && break; sleep 0.1; done
            for i in $(seq 20); do "$4" shell "$2" /bin/true >/dev/null 2>&1; done
            touch "$1/probe-stop"
            wait $run; echo "run=$?" >> "$3"
            """
        _ = try Tool.run("sh", ["-c", script, Imagectl.binary, tree, machine, output, shellBinary, String(loop), magic])
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let host = try String(contentsOfFile: backing, encoding: .isoLatin1)
        guard host.hasPrefix(magic) else { throw Failure(description: "the host file behind the loop device was changed") }
        let binaryCopy = FileManager.default.contents(atPath: shellBinary)
        let original = FileManager.default.contents(atPath: Imagectl.binary)
        guard binaryCopy == original else { throw Failure(description: "the copy of imagectl used by shell was modified") }
        return parse(text)
    }

    static func printCount(_ label: String, _ outcome: Outcome, extra: (run: Int, succeeded: Int)) {
        let run = (outcome.summary?.run ?? 0) + extra.run
        let succeeded = (outcome.summary?.succeeded ?? 0) + extra.succeeded
        print(outcome.text, terminator: "")
        print("escape probes (\(label)): \(run) run, \(succeeded) succeeded")
    }

    /// The probes made from the command line: --chdir=/proc/self/fd/N must not leave the payload
    /// in a host directory (runc CVE-2024-21626), and a --bind target behind a symlink of the
    /// image must land beneath the root. Returns (probes, successes).
    static func commandLineProbes(options: [String]) throws -> (run: Int, succeeded: Int) {
        let scratch = try TemporaryDirectory(prefix: "escape-cli")
        let tree = scratch.appending("tree")
        _ = try Tool.run("cp", ["-a", "\(Fixtures.directory)/busybox-tree", tree])
        var run = 0, succeeded = 0
        for fd in 3...12 {
            run += 1
            let r = try Imagectl.run(["run", "-q", "-D", tree] + options + ["--chdir=/proc/self/fd/\(fd)", "/bin/sh", "-c", "ls -d ../../../../* 2>/dev/null | head -n 50; echo cwd=$(pwd)"])
            // Inside the root, "../../.." is the root itself; the host's /work or /opt is not there.
            let outside = r.status == 0 && (r.stdout.contains("/work\n") || r.stdout.contains("/opt\n") || !r.stdout.contains("cwd=/"))
            if outside { succeeded += 1; Issue.record("--chdir=/proc/self/fd/\(fd) left the root: \(r.stdout)") }
        }
        // A directory of the image that is a symlink to the host path: the bind lands in the tree.
        let hostTarget = scratch.appending("host-target")
        try FileManager.default.createDirectory(atPath: hostTarget, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/mnt", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: tree + "/mnt/escape", withDestinationPath: hostTarget)
        let source = scratch.appending("bind-source")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: source + "/marker", contents: Data("x".utf8))
        run += 1
        _ = try Imagectl.run(["run", "-q", "-D", tree] + options + ["--bind=\(source):/mnt/escape/inner", "/bin/true"])
        let leaked = FileManager.default.fileExists(atPath: hostTarget + "/inner")
        if leaked { succeeded += 1; Issue.record("a bind target behind a symlink was made on the host: \(hostTarget)/inner") }
        return (run, succeeded)
    }

    static func require() throws {
        try Privileged.require(.root, .loopDevices, .fixture("busybox-tree"))
    }

    @Test func defaultContainerAllowsNothing() throws {
        try Self.require()
        let outcome = try Self.probe(options: [])
        let cli = try Self.commandLineProbes(options: [])
        Self.printCount("default", outcome, extra: cli)
        #expect(outcome.text.contains("run=0"), "\(outcome.text)")
        #expect(outcome.summary?.run ?? 0 >= 20, "\(outcome.text)")
        #expect(outcome.summary?.succeeded == 0 && outcome.escaped.isEmpty, "\(outcome.text)")
        #expect(cli.succeeded == 0)
        // The watch saw the stub init (PID 1 with -a), so the executable probe was a real one.
        #expect(outcome.probes["host-executable"]?.detail.hasPrefix("0 seen") == false, "\(outcome.text)")
    }

    @Test func pickedUserNamespaceAllowsNothing() throws {
        try Self.require()
        let outcome = try Self.probe(options: ["-U"])
        let cli = try Self.commandLineProbes(options: ["-U"])
        Self.printCount("-U", outcome, extra: cli)
        #expect(outcome.text.contains("run=0"), "\(outcome.text)")
        #expect(outcome.summary?.succeeded == 0 && outcome.escaped.isEmpty, "\(outcome.text)")
        #expect(cli.succeeded == 0)
    }

    @Test func withoutUserNamespaceOnlyWhatTheReadmeNames() throws {
        try Self.require()
        let outcome = try Self.probe(options: ["--private-users=no"])
        let cli = try Self.commandLineProbes(options: ["--private-users=no"])
        Self.printCount("--private-users=no", outcome, extra: cli)
        #expect(outcome.text.contains("run=0"), "\(outcome.text)")
        #expect(outcome.summary != nil, "\(outcome.text)")
        let unexpected = outcome.escaped.subtracting(Self.openWithoutUserNamespace)
        #expect(unexpected.isEmpty, "escapes the README does not name: \(unexpected.sorted())\n\(outcome.text)")
        #expect(cli.succeeded == 0)
        // What the README names is said there.
        let readme = try String(contentsOfFile: Fixtures.repositoryPath("../README.md"), encoding: .utf8)
        #expect(readme.contains("not a security boundary"))
    }
}
