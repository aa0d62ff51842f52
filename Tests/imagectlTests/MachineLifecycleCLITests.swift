import Foundation
import Testing
import TestSupport

/// machinectl's lifecycle verbs against real containers, as a user checks them: how long a
/// `stop`, `terminate` or SIGTERM takes, `imagectl run`'s exit status after a power off or a
/// reboot, a signal reaching the payload, `status`, and nothing left behind (registry entry,
/// the machine's cgroup scopes, its staging mounts). A private registry (IMAGECTL_RUNTIME_DIR)
/// keeps the host's machines out of it.
@Suite("imagectl stop, poweroff, reboot, terminate, kill, status", .serialized)
struct MachineLifecycleCLITests {
    typealias Background = MachineCLITests.Background

    struct Machine {
        let scratch: TemporaryDirectory
        let environment: [String: String]
        let name: String
        let run: Background
    }

    /// `imagectl run -q -x -D busybox-tree -M NAME ARGS`, in the background, registered.
    static func start(_ arguments: [String], fixture: String = "busybox-tree", name: String? = nil) throws -> Machine {
        let scratch = try TemporaryDirectory(prefix: "lifecycle-cli")
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")]
        let name = name ?? "lc15-" + UUID().uuidString.prefix(8).lowercased()
        let run = try Background(["run", "-q", "-x", "-D", Fixtures.path(fixture) ?? "", "-M", name] + arguments,
                                 environment: environment, scratch: scratch)
        let setup = MachineCLITests.Setup(scratch: scratch, tree: "", environment: environment)
        _ = try #require(try MachineCLITests.waitForMachine(name, setup, background: run), "not registered: \(run.text)")
        return Machine(scratch: scratch, environment: environment, name: name, run: run)
    }

    /// Nothing of the machine is left: no registry entry, no cgroup scope in any hierarchy, no
    /// mount below its staging directory.
    static func expectNothingLeft(_ machine: Machine, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let list = try Imagectl.run(["machines", "--json"], environment: machine.environment)
        #expect(list.stdout == "[]\n", sourceLocation: sourceLocation)
        // The whole tree (a scope may sit deep under a session), and a cgroup removed while find
        // walks is no failure of find: a failed find must not pass as "nothing left".
        let find = try Tool.run("find", ["/sys/fs/cgroup", "-ignore_readdir_race", "-name", "imagectl-\(machine.name).scope"])
        #expect(find.status == 0, "\(find.stderr)", sourceLocation: sourceLocation)
        #expect(find.stdout.isEmpty, "left: \(find.stdout)", sourceLocation: sourceLocation)
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.contains("/\(machine.name)."), sourceLocation: sourceLocation)
    }

    static func elapsed(since start: Date) -> Double { Date().timeIntervalSince(start) }

    @Test func stopPowersOffABootedBusyboxWithinTheTimeout() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["-b"])
        // status of a running machine: what a user reads.
        let status = try Imagectl.run(["status", machine.name], environment: machine.environment)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.hasPrefix(machine.name + " - "))
        for line in ["State: running", "Class: container", "OS: imagectl test image 1 (busybox)",
                     "Init: busybox; poweroff SIGUSR2, reboot SIGTERM", "Root: \(Fixtures.path("busybox-tree") ?? "")"] {
            #expect(status.stdout.contains(line), "\(status.stdout)")
        }
        let json = try Imagectl.run(["status", "--json", machine.name], environment: machine.environment)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["class"] as? String == "container")
        #expect(object["state"] as? String == "running")
        #expect((object["leader"] as? Int).map { FileManager.default.fileExists(atPath: "/proc/\($0)") } == true)

        let start = Date()
        let stop = try Imagectl.run(["stop", "--timeout=5", machine.name], environment: machine.environment)
        #expect(stop.status == 0, "\(stop.stderr)")
        #expect(stop.stderr == "Machine \(machine.name) powered off.\n")
        #expect(Self.elapsed(since: start) < 6)
        #expect(machine.run.wait(seconds: 5) == 0, "\(machine.run.text)")
        try Self.expectNothingLeft(machine)
    }

    /// A payload that ignores its power-off signal (PID 1 ignores any signal it has no handler
    /// for) is terminated when the timeout passes, and stop says so.
    @Test func stopTerminatesAfterTheTimeout() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["--kill-signal=SIGUSR1", "sleep", "1000"])
        let start = Date()
        let stop = try Imagectl.run(["stop", "--timeout=2", machine.name], environment: machine.environment)
        #expect(stop.status == 0)
        #expect(stop.stderr == "Machine \(machine.name) did not power off; terminated after 2 s.\n")
        #expect(Self.elapsed(since: start) >= 2 && Self.elapsed(since: start) < 3.5)
        #expect(machine.run.wait(seconds: 5) == 137)
        try Self.expectNothingLeft(machine)
    }

    @Test func rebootExitsWith133() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["-b"])
        let reboot = try Imagectl.run(["reboot", machine.name], environment: machine.environment)
        #expect(reboot.status == 0)
        #expect(reboot.stderr.hasPrefix("Sent SIGTERM to container \(machine.name) "))
        #expect(machine.run.wait(seconds: 15) == 133, "\(machine.run.text)")
        try Self.expectNothingLeft(machine)
    }

    @Test func terminateEndsItWithinASecond() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["-b"])
        let start = Date()
        let terminate = try Imagectl.run(["terminate", machine.name], environment: machine.environment)
        #expect(terminate.status == 0)
        #expect(Self.elapsed(since: start) < 1)
        #expect(machine.run.wait(seconds: 1) == 137)
        try Self.expectNothingLeft(machine)
    }

    /// SIGTERM to `imagectl run` powers a booted busybox off (its SIGUSR2), well within the stop
    /// timeout; a run whose payload ignores the signal ends at a second SIGTERM.
    @Test func sigtermToRunStopsTheContainer() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["-b"])
        let start = Date()
        kill(machine.run.process.processIdentifier, SIGTERM)
        #expect(machine.run.wait(seconds: 10) == 0, "\(machine.run.text)")
        #expect(Self.elapsed(since: start) < 10)
        try Self.expectNothingLeft(machine)

        let stubborn = try Self.start(["--kill-signal=SIGUSR1", "sleep", "1000"])
        kill(stubborn.run.process.processIdentifier, SIGTERM)
        #expect(stubborn.run.wait(seconds: 0.5) == nil)
        kill(stubborn.run.process.processIdentifier, SIGTERM)
        #expect(stubborn.run.wait(seconds: 2) == 137)
        try Self.expectNothingLeft(stubborn)
    }

    @Test func killReachesThePayload() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let machine = try Self.start(["sh", "-c", "trap 'echo got-usr1; exit 7' USR1; while true; do sleep 0.1; done"])
        let kill = try Imagectl.run(["kill", "--signal=USR1", "--kill-whom=leader", machine.name], environment: machine.environment)
        #expect(kill.status == 0, "\(kill.stderr)")
        #expect(machine.run.wait(seconds: 5) == 7)
        #expect(machine.run.text.contains("got-usr1"))

        // all: every process of the container, not only PID 1.
        // PID 1 keeps waiting once its children are gone, so only the signal can end it (with a
        // plain `wait` it could exit 0 between its children's deaths and its own).
        let many = try Self.start(["sh", "-c", "sleep 1000 & sleep 1000 & while :; do wait; done"])
        // Once both sleeps run (PID 1's children, seen from the host).
        let setup = MachineCLITests.Setup(scratch: many.scratch, tree: "", environment: many.environment)
        let leader = try #require(try MachineCLITests.waitForMachine(many.name, setup, background: many.run)?["leader"] as? Int)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline,
              ((try? String(contentsOfFile: "/proc/\(leader)/task/\(leader)/children", encoding: .utf8)) ?? "").split(separator: " ").count < 2 {
            usleep(20_000)
        }
        let all = try Imagectl.run(["kill", "--signal=KILL", many.name], environment: many.environment)
        #expect(all.stderr == "Sent SIGKILL to 3 processes of container \(many.name).\n")
        #expect(many.run.wait(seconds: 5) == 137)
        try Self.expectNothingLeft(many)
    }

    /// The one Debian boot of this suite (a boot costs seconds): `login` reaches the
    /// container's login prompt on a terminal (tmux), then `poweroff` makes systemd power off
    /// and `imagectl run` exits 0.
    @Test func debianLoginPromptThenPoweroff() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("tmux"), .tool("python3"))
        let machine = try Self.start(["-b"], fixture: "debian-tree")
        let status = try Imagectl.run(["status", machine.name], environment: machine.environment)
        #expect(status.stdout.contains("OS: Debian GNU/Linux 12 (bookworm)"), "\(status.stdout)")
        #expect(status.stdout.contains("Init: systemd; poweroff SIGRTMIN+4, reboot SIGINT"), "\(status.stdout)")

        let command = "IMAGECTL_RUNTIME_DIR=\(machine.environment["IMAGECTL_RUNTIME_DIR"] ?? "") \(Imagectl.binary) login \(machine.name); sleep 60"
        let tmux = try ConsoleTests.Tmux(command: command, columns: 100, rows: 30)
        #expect(tmux.waitFor("Connected to machine \(machine.name)."), "\(tmux.screen)")
        #expect(tmux.waitFor("login:", seconds: 60), "\(tmux.screen)")
        // ^]^]^] leaves the login session; the container runs on.
        try tmux.send("C-]", "C-]", "C-]")
        #expect(tmux.waitFor("Session killed"), "\(tmux.screen)")
        #expect(machine.run.process.isRunning)

        let poweroff = try Imagectl.run(["poweroff", machine.name], environment: machine.environment)
        #expect(poweroff.status == 0, "\(poweroff.stderr)")
        #expect(poweroff.stderr.hasPrefix("Sent SIGRTMIN+4 to container \(machine.name) "))
        #expect(machine.run.wait(seconds: 60) == 0, "\(machine.run.text.suffix(2000))")
        #expect(machine.run.text.contains("Powering off."), "\(machine.run.text.suffix(2000))")
        try Self.expectNothingLeft(machine)
    }

    /// `stop --timeout=5` of a booted Debian tree: systemd gets SIGRTMIN+4 and the machine is
    /// gone within the timeout and a second, powered off (or, on a machine too slow for that,
    /// terminated, which stop then says).
    @Test func stopEndsABootedDebianWithinTheTimeout() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let machine = try Self.start(["-b"], fixture: "debian-tree")
        // Booted: systemd says its start-up is over (running, or degraded without a network).
        // The machine is registered before systemd has made its private bus socket, so
        // systemctl may first fail to connect; asked again, as a user would.
        var booted = try Imagectl.run(["shell", machine.name, "/bin/systemctl", "is-system-running", "--wait"], environment: machine.environment)
        let bootDeadline = Date().addingTimeInterval(60)
        while booted.stderr.contains("Failed to connect to bus"), Date() < bootDeadline {
            usleep(200_000)
            booted = try Imagectl.run(["shell", machine.name, "/bin/systemctl", "is-system-running", "--wait"], environment: machine.environment)
        }
        #expect(["running", "degraded"].contains(booted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(booted.stdout)\(booted.stderr)")
        let start = Date()
        let stop = try Imagectl.run(["stop", "--timeout=5", machine.name], environment: machine.environment)
        #expect(stop.status == 0, "\(stop.stderr)")
        #expect(Self.elapsed(since: start) < 6, "\(stop.stderr)")
        let status = machine.run.wait(seconds: 5)
        if stop.stderr == "Machine \(machine.name) powered off.\n" {
            #expect(status == 0, "\(machine.run.text.suffix(2000))")
        } else {
            #expect(stop.stderr.contains("terminated after 5"), "\(stop.stderr)")
        }
        try Self.expectNothingLeft(machine)
    }

    @Test func unknownMachinesAndBadOptions() throws {
        let scratch = try TemporaryDirectory(prefix: "lifecycle-cli")
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.path]
        for verb in ["status", "poweroff", "reboot", "stop", "terminate", "kill"] {
            let r = try Imagectl.run([verb, "nosuch"], environment: environment)
            #expect(r.status == 1, "\(verb)")
            #expect(r.stderr == "error: no machine \"nosuch\" is running\n", "\(verb)")
        }
        for arguments in [["stop", "--timeout=soon", "x"], ["kill", "--signal=SIGNOPE", "x"], ["kill", "--kill-whom=some", "x"]] {
            let r = try Imagectl.run(arguments, environment: environment)
            #expect(r.status == 2, "\(arguments)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(arguments): \(r.stderr)")
        }
    }

    /// Ten -x runs of one tree at once: each gets its own NAME-<16 hex> name, all run side by
    /// side, and all are gone afterwards.
    @Test func tenEphemeralRunsOfOneTreeAtOnce() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "lifecycle-cli")
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")]
        let runs = try (0..<10).map { _ in
            try Background(["run", "-q", "-x", "-D", Fixtures.path("busybox-tree") ?? "", "sleep", "60"], environment: environment, scratch: scratch)
        }
        var names: [String] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let list = try Imagectl.run(["machines", "--json"], environment: environment)
            let array = (try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]) ?? []
            names = array.compactMap { $0["machine"] as? String }
            if names.count == 10 || runs.contains(where: { !$0.process.isRunning }) { break }
            usleep(100_000)
        }
        #expect(names.count == 10, "\(runs.map(\.text))")
        #expect(Set(names).count == names.count)
        for name in names {
            #expect(name.hasPrefix("busybox-tree-") && name.count == "busybox-tree-".count + 16, "\(name)")
        }
        for run in runs { kill(run.process.processIdentifier, SIGTERM) }
        for run in runs { #expect(run.wait(seconds: 10) == 137) }
        for name in names {
            try Self.expectNothingLeft(Machine(scratch: scratch, environment: environment, name: name, run: runs[0]))
        }
    }
}
