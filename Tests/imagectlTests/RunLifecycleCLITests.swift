import Foundation
import Testing
import TestSupport

/// `imagectl run` lifecycle: readiness towards imagectl's own service manager (--notify-ready=),
/// the lock on a -D tree or -i image while it runs, nothing left behind by a kill -9 of imagectl,
/// and bind targets made beneath the root.
@Suite("imagectl run: lifecycle", .serialized)
struct RunLifecycleCLITests {
    struct Failure: Error { var text: String }

    /// Machine names must be unique among running machines, and other test runs may be going on.
    static func unique() -> String { "lc-" + UUID().uuidString.prefix(8).lowercased() }

    // MARK: --notify-ready

    /// A service manager's notification socket, played by a small Python datagram listener bound
    /// to a path in `scratch`: every datagram becomes one line "SECONDS<TAB>TEXT" (newlines of the
    /// message shown as "|"), SECONDS since the Unix epoch.
    final class NotifyListener: @unchecked Sendable {
        // Immutable after init; `stop` ends the listener process.
        let path: String
        let output: String
        let process = Process()

        init(in scratch: TemporaryDirectory) throws {
            path = scratch.appending("notify.sock")
            output = scratch.appending("notify.log")
            let script = """
                import socket, sys, time
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                s.bind(sys.argv[1])
                out = open(sys.argv[2], "w", buffering=1)
                while True:
                    data = s.recv(65536)
                    out.write("%.3f\\t%s\\n" % (time.time(), data.decode(errors="replace").replace("\\n", "|")))
                """
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script, path, output]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(10)
            while !FileManager.default.fileExists(atPath: path) {
                guard Date() < deadline else { throw Failure(text: "the notify listener did not start") }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }

        /// The datagrams received so far: (time, text with "|" for newlines).
        var messages: [(time: Double, text: String)] {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, let time = Double(parts[0]) else { return nil }
                return (time, String(parts[1]))
            }
        }

        /// SIGKILL: test runners start children with SIGTERM blocked.
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        deinit { stop() }
    }

    static func fields(_ text: String) -> [String] { text.split(separator: "|").map(String.init) }

    /// The payload tells systemd-notify it is ready after a second, with a status. With
    /// --notify-ready=yes imagectl passes READY=1 on only then; the payload's STATUS= is forwarded.
    @Test func notifyReadyYesWaitsForThePayload() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("python3"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let listener = try NotifyListener(in: scratch)
        defer { listener.stop() }
        let started = Date().timeIntervalSince1970
        let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", Self.unique(),
                                  "--notify-ready=yes", "sh", "-c",
                                  "echo $NOTIFY_SOCKET; sleep 1; systemd-notify --ready --status='payload up'; sleep 0.5"],
                                 environment: ["NOTIFY_SOCKET": listener.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "/run/host/notify\n")
        // The listener may still be taking in the last datagrams.
        Poll.until(timeout: 5) { listener.messages.contains { Self.fields($0.text).contains("STATUS=Container running: payload up") } }
        let messages = listener.messages
        // First: the container runs, not yet ready.
        #expect(messages.first.map { Self.fields($0.text) } == ["STATUS=Container running."], "\(messages)")
        let ready = messages.firstIndex { Self.fields($0.text).contains("READY=1") }
        let status = messages.firstIndex { Self.fields($0.text).contains("STATUS=Container running: payload up") }
        #expect(ready != nil && status != nil, "\(messages)")
        if let ready, let status {
            #expect(ready >= status, "\(messages)")
            #expect(messages[ready].time - started >= 0.9, "READY=1 came before the payload's: \(messages)")
        }
        #expect(messages.filter { Self.fields($0.text).contains("READY=1") }.count == 1, "\(messages)")
    }

    /// --notify-ready=no (the default): READY=1 as soon as the payload runs, before anything the
    /// payload sends; the payload's STATUS= still comes through.
    @Test func notifyReadyNoIsReadyAtOnce() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("python3"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let listener = try NotifyListener(in: scratch)
        defer { listener.stop() }
        let started = Date().timeIntervalSince1970
        let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", Self.unique(),
                                  "sh", "-c", "sleep 1; systemd-notify --ready --status='payload up'; sleep 0.5"],
                                 environment: ["NOTIFY_SOCKET": listener.path])
        #expect(r.status == 0, "\(r.stderr)")
        Poll.until(timeout: 5) { listener.messages.contains { Self.fields($0.text).contains("STATUS=Container running: payload up") } }
        let messages = listener.messages
        #expect(messages.first.map { Self.fields($0.text) } == ["READY=1", "STATUS=Container running."], "\(messages)")
        let status = messages.first { Self.fields($0.text) == ["STATUS=Container running: payload up"] }
        #expect(status != nil, "\(messages)")
        // READY=1 did not wait for the payload, which slept a second before it said anything
        // (measured between the two messages: a loaded machine may take a while to start).
        if let first = messages.first, let status {
            #expect(first.time >= started && status.time - first.time >= 0.8, "\(messages)")
        }
        #expect(messages.filter { Self.fields($0.text).contains("READY=1") }.count == 1, "\(messages)")
    }

    /// A payload that is not PID 1 (-a: under the stub init) is in the container too, and so is
    /// one in a user namespace (-U): both are heard.
    @Test func notifyFromPID2AndFromAUserNamespace() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("python3"))
        for options in [["-a"], ["-U"]] {
            let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
            let listener = try NotifyListener(in: scratch)
            defer { listener.stop() }
            let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", Self.unique(),
                                      "--notify-ready=yes"] + options + ["sh", "-c", "systemd-notify --ready --status=up; echo $$"],
                                     environment: ["NOTIFY_SOCKET": listener.path])
            #expect(r.status == 0, "\(options): \(r.stderr)")
            #expect(r.stdout == (options == ["-a"] ? "2\n" : "1\n"), "\(options)")
            Poll.until(timeout: 5) { listener.messages.count >= 2 }
            let messages = listener.messages
            #expect(messages.map { Self.fields($0.text) } == [["STATUS=Container running."], ["READY=1", "STATUS=Container running: up"]],
                    "\(options): \(messages)")
        }
    }

    @Test func badNotifyReadyValueIsAUsageError() throws {
        let r = try Imagectl.run(["run", "-D", "/tmp", "--notify-ready=maybe", "true"])
        #expect(r.status == 2)
        #expect(r.stderr == "error: invalid boolean \"maybe\" for --notify-ready\n", "\(r.stderr)")
    }

    /// The same with an abstract socket name ("@..."), as a service manager may hand out.
    @Test func abstractNotifySocket() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("python3"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let name = "imagectl-test-\(UUID().uuidString.prefix(8))"
        let out = scratch.appending("abstract.log")
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind("\\0" + sys.argv[1])
            s.settimeout(20)
            print(s.recv(4096).decode().replace("\\n", "|"), flush=True)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, name]
        FileManager.default.createFile(atPath: out, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        try process.run()
        // Bound once /proc/net/unix lists the name.
        let deadline = Date().addingTimeInterval(10)
        while !((try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? "").contains("@\(name)") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("busybox-tree") ?? "", "-M", Self.unique(), "true"],
                                 environment: ["NOTIFY_SOCKET": "@\(name)"])
        #expect(r.status == 0, "\(r.stderr)")
        process.waitUntilExit()
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "READY=1|STATUS=Container running.\n")
    }

    /// A booted debian-tree sends READY=1 itself when it reached its default target; with
    /// --notify-ready=yes that is what reaches the service manager. SIGTERM then halts it.
    @Test func bootedSystemReportsReadiness() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("python3"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let listener = try NotifyListener(in: scratch)
        defer { listener.stop() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", Self.unique(),
                             "--notify-ready=yes", "-b"]
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = listener.path
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(90)
        while !listener.messages.contains(where: { Self.fields($0.text).contains("READY=1") }) && Date() < deadline && process.isRunning {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let messages = listener.messages
        // SIGTERM (imagectl unblocks it): the booted system halts, exit 0.
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(messages.first.map { Self.fields($0.text) } == ["STATUS=Container running."], "\(messages)")
        #expect(messages.contains { Self.fields($0.text).contains("READY=1") }, "\(messages)")
        // systemd's own status line came through too (e.g. "Startup finished in ...").
        #expect(messages.contains { $0.text.contains("STATUS=Container running: ") }, "\(messages)")
    }

    // MARK: Lock on -D / -i

    /// A private copy of a fixture (tests that write never touch the shared fixtures).
    static func copy(_ fixture: String, to scratch: TemporaryDirectory, as name: String) throws -> String {
        let target = scratch.appending(name)
        let r = try Tool.run("cp", ["-a", "--sparse=always", "\(Fixtures.directory)/\(fixture)", target])
        guard r.status == 0 else { throw Failure(text: r.stderr) }
        return target
    }

    /// `imagectl ARGS` started in the background (standard streams to files in `scratch`).
    final class Background: @unchecked Sendable {
        // Immutable after init.
        let process = Process()
        let stderr: String

        init(_ arguments: [String], scratch: TemporaryDirectory, environment: [String: String] = [:]) throws {
            stderr = scratch.appending("stderr-\(UUID().uuidString.prefix(8))")
            FileManager.default.createFile(atPath: stderr, contents: nil)
            process.executableURL = URL(fileURLWithPath: Imagectl.binary)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderr))
            try process.run()
        }

        var pid: Int32 { process.processIdentifier }

        func killHard() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        deinit { killHard() }
    }

    /// The registry entry's JSON of `machine` in the private runtime directory, once it is there
    /// (the container runs then): its "leader" PID.
    static func waitForLeader(_ machine: String, runtime: String, while background: Background) throws -> Int32 {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && background.process.isRunning {
            if let data = FileManager.default.contents(atPath: "\(runtime)/machines/\(machine)"),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let leader = object["leader"] as? Int {
                return Int32(leader)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOfFile: background.stderr, encoding: .utf8)) ?? ""
        throw Failure(text: "machine \(machine) did not start: \(text)")
    }

    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    /// Waits up to `seconds` for `condition`.
    static func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return condition()
    }

    /// A second writable run of the same tree is refused as busy (exit 16, one error line) while
    /// the first runs; -x and --read-only runs share it; a different tree is not affected.
    /// Cgroups of containers that ended without removing them (a kill -9 of imagectl) are
    /// removed by `clean` and the next run; a fresh one (a run that has not joined it yet) and one
    /// with a process in it stay.
    @Test func endedContainersCgroupsAreSwept() throws {
        try Privileged.require(.root)
        // imagectl's parent cgroup in the named systemd (or v2) hierarchy is this process's.
        let own = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8).split(separator: "\n")
        let line = try #require(own.first { $0.contains(":name=systemd:") } ?? own.first { $0.hasPrefix("0::") })
        let path = String(line.split(separator: ":", maxSplits: 2)[2])
        let mount = line.contains("name=systemd") ? "/sys/fs/cgroup/systemd" : (FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup")
        let parent = mount + (path == "/" ? "" : path)
        let old = parent + "/imagectl-\(Self.unique())-ended.scope"
        let fresh = parent + "/imagectl-\(Self.unique())-fresh.scope"
        try FileManager.default.createDirectory(atPath: old + "/payload", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: fresh, withIntermediateDirectories: false)
        defer { _ = rmdir(old + "/payload"); _ = rmdir(old); _ = rmdir(fresh) }
        // Made two minutes ago, as far as the sweep can tell.
        #expect(try Tool.run("touch", ["-d", "-2 minutes", old]).status == 0)
        let pool = try TemporaryDirectory()
        let clean = try Imagectl.run(["clean"], root: pool.path)
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(clean.stdout.contains("Removed the cgroup of an ended container \(old)"))
        #expect(!FileManager.default.fileExists(atPath: old))
        #expect(FileManager.default.fileExists(atPath: fresh))
    }

    @Test func treeIsLockedWhileItRuns() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let tree = try Self.copy("busybox-tree", to: scratch, as: "locked")
        let runtime = scratch.appending("runtime")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime]
        let first = Self.unique()
        let running = try Background(["run", "-q", "-D", tree, "-M", first, "sleep", "30"], scratch: scratch, environment: env)
        _ = try Self.waitForLeader(first, runtime: runtime, while: running)
        let second = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "true"], environment: env)
        #expect(second.status == 16)
        #expect(second.stderr == "error: image '\(tree)' is busy (locked by another process)\n", "\(second.stderr)")
        // Shared users wait for no one but are refused too while a writer holds it.
        #expect(try Imagectl.run(["run", "-q", "-x", "-D", tree, "-M", Self.unique(), "true"], environment: env).status == 16)
        running.killHard()

        // Two -x runs (shared) at once, and a --read-only one beside them.
        let ephemeral = Self.unique()
        let shared = try Background(["run", "-q", "-x", "-D", tree, "-M", ephemeral, "sleep", "30"], scratch: scratch, environment: env)
        _ = try Self.waitForLeader(ephemeral, runtime: runtime, while: shared)
        let alongside = try Imagectl.run(["run", "-q", "-x", "-D", tree, "-M", Self.unique(), "true"], environment: env)
        #expect(alongside.status == 0, "\(alongside.stderr)")
        let readOnly = try Imagectl.run(["run", "-q", "--read-only", "-D", tree, "-M", Self.unique(), "true"], environment: env)
        #expect(readOnly.status == 0, "\(readOnly.stderr)")
        // ...but not a writer.
        #expect(try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "true"], environment: env).status == 16)
        shared.killHard()
        // Free again once the holder is gone (a kill -9 releases an OFD lock).
        #expect(try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "true"], environment: env).status == 0)
    }

    /// A tree of the store's pool run by path holds the store's lock: `imagectl remove` of it is
    /// busy while it runs.
    @Test func storeHonoursTheLockOfATreeRunByPath() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let pool = scratch.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        let name = Self.unique()
        let tree = try Self.copy("busybox-tree", to: scratch, as: "pool/\(name)")
        let runtime = scratch.appending("runtime")
        // -M: an ephemeral machine's name would otherwise get a random suffix.
        let running = try Background(["run", "-q", "-x", "-D", tree, "-M", name, "sleep", "30"], scratch: scratch,
                                     environment: ["IMAGECTL_RUNTIME_DIR": runtime])
        _ = try Self.waitForLeader(name, runtime: runtime, while: running)
        let remove = try Imagectl.run(["remove", name], root: pool)
        #expect(remove.status == 16, "\(remove.stdout) \(remove.stderr)")
        #expect(FileManager.default.fileExists(atPath: tree + "/bin"))
        running.killHard()
        #expect(try Imagectl.run(["remove", name], root: pool).status == 0)
    }

    /// -i IMAGE: a second run of the same image is busy while the first runs.
    @Test func imageIsLockedWhileItRuns() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let image = try Self.copy("gpt-verity.raw", to: scratch, as: "lock-\(Self.unique()).raw")
        let hash = try String(contentsOfFile: "\(Fixtures.directory)/gpt-verity.roothash.txt", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let runtime = scratch.appending("runtime")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime]
        let first = Self.unique()
        let running = try Background(["run", "-q", "-i", image, "--root-hash=\(hash)", "-M", first, "sleep", "30"],
                                     scratch: scratch, environment: env)
        _ = try Self.waitForLeader(first, runtime: runtime, while: running)
        let second = try Imagectl.run(["run", "-q", "-i", image, "--root-hash=\(hash)", "-M", Self.unique(), "true"], environment: env)
        #expect(second.status == 16)
        #expect(second.stderr == "error: image '\(image)' is busy (locked by another process)\n", "\(second.stderr)")
        running.killHard()
    }

    // MARK: kill -9 of imagectl

    /// Loop devices backed by `file` (/sys/block/loop*/loop/backing_file).
    static func loops(backedBy file: String) -> [String] {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return devices.filter { $0.hasPrefix("loop") }.filter { device in
            let backing = (try? String(contentsOfFile: "/sys/block/\(device)/loop/backing_file", encoding: .utf8)) ?? ""
            return backing.trimmingCharacters(in: .whitespacesAndNewlines) == file
        }
    }

    /// Mounts (of this process's namespace, the host's) whose mount point is under `prefix`.
    static func mounts(under prefix: String) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init).filter { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(prefix)
        }
    }

    /// kill -9 of imagectl running -i IMAGE: the container dies with it, and within a few
    /// seconds the image is neither mounted on the host nor attached to a loop device.
    @Test func killedImageRunLeavesNoMountOrLoopDevice() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let image = try Self.copy("gpt-verity.raw", to: scratch, as: "kill-\(Self.unique()).raw")
        let hash = try String(contentsOfFile: "\(Fixtures.directory)/gpt-verity.roothash.txt", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let runtime = scratch.appending("runtime")
        let machine = Self.unique()
        let running = try Background(["run", "-q", "-i", image, "--root-hash=\(hash)", "-M", machine, "sleep", "60"],
                                     scratch: scratch, environment: ["IMAGECTL_RUNTIME_DIR": runtime])
        let leader = try Self.waitForLeader(machine, runtime: runtime, while: running)
        let staging = "/run/imagectl/runner/image.\(running.pid)."
        // While it runs the loop device is in use by the container, whose namespace alone holds
        // the image's mounts: the host's copy was detached once the container ran.
        #expect(!Self.loops(backedBy: image).isEmpty)
        #expect(Self.eventually { Self.mounts(under: staging).isEmpty }, "\(Self.mounts(under: staging))")
        #expect(try Tool.run("cat", ["/proc/\(leader)/root/etc/os-release"]).stdout.contains("ID=imagectl-test"))
        running.killHard()
        #expect(Self.eventually { !Self.isAlive(leader) }, "the container outlived imagectl")
        #expect(Self.eventually { Self.loops(backedBy: image).isEmpty }, "\(Self.loops(backedBy: image))")
        #expect(Self.mounts(under: staging).isEmpty, "\(Self.mounts(under: staging))")
        // The next run of the same image works (the lock went with the process) and removes the
        // dead run's staging directory.
        let again = try Imagectl.run(["run", "-q", "-i", image, "--root-hash=\(hash)", "-M", Self.unique(), "true"],
                                     environment: ["IMAGECTL_RUNTIME_DIR": runtime])
        #expect(again.status == 0, "\(again.stderr)")
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: "/run/imagectl/runner")) ?? [])
            .filter { $0.hasPrefix("image.\(running.pid).") }
        #expect(left.isEmpty, "\(left)")
        #expect(Self.loops(backedBy: image).isEmpty)
    }

    /// kill -9 of imagectl running -x on a btrfs subvolume: the snapshot of the killed run is
    /// removed by the next run; a snapshot of a run still going is never touched.
    @Test func killedEphemeralRunsSnapshotIsRemovedByTheNextRun() throws {
        try Privileged.require(.root, .btrfs, .loopDevices, .fixture("busybox-tree"), .tool("btrfs"))
        let fs = try BtrfsScratch()
        defer { fs.unmount() }
        let source = fs.appending("tree")
        #expect(try Tool.run("btrfs", ["-q", "subvolume", "create", source]).status == 0)
        #expect(try Tool.run("cp", ["-a", "\(Fixtures.directory)/busybox-tree/.", source]).status == 0)
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let runtime = scratch.appending("runtime")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime]
        func snapshots() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: fs.mountPoint)) ?? []).filter { $0.hasPrefix(".#tree.") && !$0.hasSuffix(".lck") })
        }

        let killed = Self.unique()
        let doomed = try Background(["run", "-q", "-x", "-D", source, "-M", killed, "sleep", "60"], scratch: scratch, environment: env)
        let leader = try Self.waitForLeader(killed, runtime: runtime, while: doomed)
        let stale = snapshots()
        #expect(stale.count == 1, "\(stale)")
        doomed.killHard()
        #expect(Self.eventually { !Self.isAlive(leader) }, "the container outlived imagectl")

        // A live run's snapshot next to it.
        let live = Self.unique()
        let living = try Background(["run", "-q", "-x", "-D", source, "-M", live, "sleep", "60"], scratch: scratch, environment: env)
        _ = try Self.waitForLeader(live, runtime: runtime, while: living)
        let liveSnapshot = snapshots().subtracting(stale)
        #expect(liveSnapshot.count == 1, "\(snapshots())")

        // The next run removes the killed run's snapshot, not the live one.
        let next = try Imagectl.run(["run", "-q", "-x", "-D", source, "-M", Self.unique(), "true"], environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(snapshots() == liveSnapshot, "\(snapshots())")
        living.killHard()
        let last = try Imagectl.run(["run", "-q", "-x", "-D", source, "-M", Self.unique(), "true"], environment: env)
        #expect(last.status == 0, "\(last.stderr)")
        #expect(snapshots().isEmpty, "\(snapshots())")
        let list = try Tool.run("btrfs", ["subvolume", "list", fs.mountPoint])
        #expect(list.stdout.split(separator: "\n").count == 1, "\(list.stdout)")
    }

    /// kill -9 of imagectl with an empty --bind source: the temporary directory under /var/tmp is
    /// removed by the next run.
    @Test func killedRunsTemporaryDirectoryIsRemovedByTheNextRun() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let runtime = scratch.appending("runtime")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime]
        func temporaries() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp")) ?? []).filter { $0.hasPrefix("imagectl-bind-") })
        }
        let before = temporaries()
        let machine = Self.unique()
        let doomed = try Background(["run", "-q", "-x", "-D", "\(Fixtures.directory)/busybox-tree", "-M", machine,
                                     "--bind=:/scratch", "sleep", "60"], scratch: scratch, environment: env)
        _ = try Self.waitForLeader(machine, runtime: runtime, while: doomed)
        let made = temporaries().subtracting(before)
        #expect(made.count == 1, "\(made)")
        doomed.killHard()
        #expect(made.allSatisfy { FileManager.default.fileExists(atPath: "/var/tmp/" + $0) })
        let next = try Imagectl.run(["run", "-q", "-x", "-D", "\(Fixtures.directory)/busybox-tree", "-M", Self.unique(), "true"],
                                    environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(made.allSatisfy { !FileManager.default.fileExists(atPath: "/var/tmp/" + $0) }, "\(made)")
    }

    /// kill -9 of imagectl with an overlay whose upper layer is inside the tree ("+"): its work
    /// directory beside the upper layer is removed by the next run with that upper layer.
    @Test func killedRunsWorkDirectoryBeneathTheRootIsRemovedByTheNextRun() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let tree = try Self.copy("busybox-tree", to: scratch, as: "overlaid")
        try FileManager.default.createDirectory(atPath: tree + "/srv/lower", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/srv/upper", withIntermediateDirectories: true)
        let runtime = scratch.appending("runtime")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime]
        func workDirectories() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: tree + "/srv")) ?? []).filter { $0.hasPrefix(".#imagectl-overlay-work.") }
        }
        let machine = Self.unique()
        let doomed = try Background(["run", "-q", "-D", tree, "-M", machine, "--overlay=+/srv/lower:+/srv/upper:/mnt", "sleep", "60"],
                                    scratch: scratch, environment: env)
        _ = try Self.waitForLeader(machine, runtime: runtime, while: doomed)
        #expect(workDirectories().count == 1)
        doomed.killHard()
        #expect(workDirectories().count == 1)
        let next = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "--overlay=+/srv/lower:+/srv/upper:/mnt",
                                     "sh", "-c", "ls -a /srv | grep -c imagectl-overlay-work"], environment: env)
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stdout == "1\n")  // its own only
        #expect(workDirectories().isEmpty)
    }

    /// An imagectl killed while it was still setting an image up leaves the image mounted on its
    /// staging directory: the next run unmounts and removes it (the PID in the name is gone).
    @Test func stagingOfAnImagectlKilledDuringSetUpIsRemovedByTheNextRun() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let finished = try Tool.run("sh", ["-c", "sh -c 'echo $$'"])
        let dead = try #require(Int32(finished.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        try #require(kill(dead, 0) != 0, "PID \(dead) was taken again at once")
        let staging = "/run/imagectl/runner/image.\(dead).\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "a"))"
        try FileManager.default.createDirectory(atPath: staging + "/root", withIntermediateDirectories: true)
        #expect(try Tool.run("mount", ["-t", "tmpfs", "tmpfs", staging + "/root"]).status == 0)
        let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("busybox-tree") ?? "", "-M", Self.unique(), "true"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.mounts(under: staging).isEmpty, "\(Self.mounts(under: staging))")
        #expect(!FileManager.default.fileExists(atPath: staging))
        if !Self.mounts(under: staging).isEmpty { _ = try? Tool.run("umount", ["-l", staging + "/root"]) }
    }

    // MARK: bind targets beneath the root

    /// --bind onto a dangling symlink or below a missing directory: what the target names is
    /// created beneath the container root, as nspawn does; a link pointing "out" (/../../X) stays
    /// inside the root, and nothing appears on the host.
    @Test func bindTargetsThroughDanglingSymlinksStayInsideTheRoot() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-lifecycle")
        let tree = try Self.copy("busybox-tree", to: scratch, as: "links")
        let source = scratch.appending("source")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try "in source\n".write(toFile: source + "/f", atomically: true, encoding: .utf8)
        let file = scratch.appending("file")
        try "a file\n".write(toFile: file, atomically: true, encoding: .utf8)
        let escape = "lc-escape-\(Self.unique())"
        try FileManager.default.createSymbolicLink(atPath: tree + "/abs", withDestinationPath: "/missing/deep")
        try FileManager.default.createSymbolicLink(atPath: tree + "/out", withDestinationPath: "/../../\(escape)/dir")
        try FileManager.default.createSymbolicLink(atPath: tree + "/rel", withDestinationPath: "../nowhere/file")
        try FileManager.default.createSymbolicLink(atPath: tree + "/hostetc", withDestinationPath: "/../../../etc/\(escape)")
        let r = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(),
                                  "--bind=\(source):/abs", "--bind=\(source):/out", "--bind-ro=\(file):/rel",
                                  "--bind-ro=\(file):/hostetc", "--bind=\(source):/new/parent/dir",
                                  "sh", "-c", "cat /abs/f /out/f /rel /hostetc /new/parent/dir/f; for p in /missing/deep /\(escape)/dir /nowhere /etc/\(escape); do ls -d $p; done"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "in source\nin source\na file\na file\nin source\n/missing/deep\n/\(escape)/dir\n/nowhere\n/etc/\(escape)\n", "\(r.stdout)")
        // Made in the tree, never on the host.
        for path in ["/missing/deep", "/\(escape)/dir", "/nowhere/file", "/etc/\(escape)", "/new/parent/dir"] {
            #expect(FileManager.default.fileExists(atPath: tree + path), "\(path)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/\(escape)"))
        #expect(!FileManager.default.fileExists(atPath: "/etc/\(escape)"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/\(escape)"))
    }
}
