import Foundation
import Testing
import TestSupport

/// `imagectl machines`, `stop` and `shell` against a container started in the background, with a
/// private registry directory (IMAGECTL_RUNTIME_DIR) so that the host's machines are not touched.
@Suite("imagectl machines, stop, shell", .serialized)
struct MachineCLITests {
    /// An `imagectl run` in the background; killed and reaped when the value goes away.
    final class Background: @unchecked Sendable {
        // Set once in init; the test that owns it calls `wait` from its own thread only.
        let process = Process()
        let output: String

        init(_ arguments: [String], environment: [String: String], scratch: TemporaryDirectory) throws {
            output = scratch.appending("background.out")
            FileManager.default.createFile(atPath: output, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.executableURL = URL(fileURLWithPath: Imagectl.binary)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        /// Waits up to `seconds` for the exit; nil when it still runs.
        func wait(seconds: Double) -> Int32? {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { return nil }
            return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        }

        var text: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    struct Setup {
        let scratch: TemporaryDirectory
        let tree: String
        let environment: [String: String]
    }

    static func setUp(name: String) throws -> Setup {
        let scratch = try TemporaryDirectory(prefix: "machines-test")
        let tree = scratch.appending(name)
        let copy = try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree])
        #expect(copy.status == 0, "\(copy.stderr)")
        return Setup(scratch: scratch, tree: tree, environment: ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")])
    }

    /// Polls `imagectl machines --json` until `name` is listed (the container registers once its
    /// PID 1 runs).
    static func waitForMachine(_ name: String, _ setup: Setup, background: Background) throws -> [String: Any]? {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let list = try Imagectl.run(["machines", "--json"], environment: setup.environment)
            if let array = try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]],
               let found = array.first(where: { $0["machine"] as? String == name }) {
                return found
            }
            if !background.process.isRunning { return nil }
            usleep(50_000)
        }
        return nil
    }

    @Test func machinesListsARunningContainerAndStopEndsIt() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let setup = try Self.setUp(name: "mtest")
        let empty = try Imagectl.run(["machines"], environment: setup.environment)
        #expect(empty.status == 0)
        #expect(empty.stdout == "No machines.\n")

        let background = try Background(["run", "-q", "-D", setup.tree, "sleep", "60"], environment: setup.environment, scratch: setup.scratch)
        let record = try #require(try Self.waitForMachine("mtest", setup, background: background), "not registered: \(background.text)")
        // machines --json: the table's columns and nothing of the registry's own fields.
        #expect(Set(record.keys) == ["machine", "class", "service", "leader", "root", "addresses"], "\(record)")
        #expect(record["class"] as? String == "container")
        #expect(record["root"] as? String == setup.tree)
        let leader = try #require(record["leader"] as? Int)
        // The leader is the container's PID 1: the sleep, seen from the host.
        #expect(try String(contentsOfFile: "/proc/\(leader)/comm", encoding: .utf8) == "sleep\n")
        let statusJSON = try Imagectl.run(["status", "--json", "mtest"], environment: setup.environment)
        let details = try #require(try JSONSerialization.jsonObject(with: statusJSON.stdoutData) as? [String: Any], "\(statusJSON.stderr)")
        #expect(details["supervisor"] as? Int == Int(background.process.processIdentifier))

        let table = try Imagectl.run(["machines"], environment: setup.environment)
        let row = table.stdout.split(separator: "\n").dropFirst().first.map(String.init) ?? ""
        #expect(row.split(separator: " ", omittingEmptySubsequences: true) == ["mtest", "container", "imagectl", "\(leader)", setup.tree, "-"].map { Substring($0) })
        #expect(table.stdout.hasSuffix("\n1 machine listed.\n"))

        // A second container of the same name is refused as busy.
        let second = try Imagectl.run(["run", "-q", "-D", setup.tree, "-M", "mtest", "/bin/true"], environment: setup.environment)
        #expect(second.status == 16)
        #expect(second.stderr.contains("mtest is already running"))

        // imagectl shell: a new process in the container's namespaces.
        let hostname = try Imagectl.run(["shell", "mtest", "/bin/cat", "/etc/hostname"], environment: setup.environment)
        #expect(hostname.status == 0, "\(hostname.stderr)")
        #expect(hostname.stdout == (try String(contentsOfFile: setup.tree + "/etc/hostname", encoding: .utf8)))
        let uts = try Imagectl.run(["shell", "mtest", "hostname"], environment: setup.environment)
        #expect(uts.stdout == "mtest\n")
        #expect(try Imagectl.run(["shell", "mtest", "sh", "-c", "exit 5"], environment: setup.environment).status == 5)
        let inside = try Imagectl.run(["shell", "mtest", "sh", "-c", "cat /proc/1/comm; for n in mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done; grep CapBnd /proc/self/status; id -u; pwd; echo $container"],
                                      environment: setup.environment)
        #expect(inside.status == 0, "\(inside.stderr)")
        let lines = inside.stdout.split(separator: "\n").map(String.init)
        var expected = ["sleep"]
        for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
            // /proc/self/ns/pid is the namespace the shell itself is in: the container's children's.
            let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(leader)/ns/\(ns == "pid" ? "pid_for_children" : ns)")
            expected.append(link)
        }
        let leaderStatus = try String(contentsOfFile: "/proc/\(leader)/status", encoding: .utf8)
        expected.append(String(leaderStatus.split(separator: "\n").first { $0.hasPrefix("CapBnd:") } ?? ""))
        expected += ["0", "/root", "imagectl"]
        #expect(lines == expected)
        let missing = try Imagectl.run(["shell", "mtest", "/bin/no-such-program"], environment: setup.environment)
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: ") && missing.stderr.contains("no-such-program"))
        #expect(try Imagectl.run(["shell", "nosuch", "true"], environment: setup.environment).stderr == "error: no machine \"nosuch\" is running\n")

        // A plain payload's power-off is its kill signal (SIGKILL by default); stop waits for it.
        let stop = try Imagectl.run(["stop", "mtest"], environment: setup.environment)
        #expect(stop.status == 0)
        #expect(stop.stderr == "Machine mtest stopped (SIGKILL).\n")
        let status = background.wait(seconds: 20)
        #expect(status == Int32(137), "\(String(describing: status)) \(background.text)")
        #expect(background.text.contains("terminated by signal SIGKILL"))
        // Unregistered on the way out: the list is empty and so is the directory.
        #expect(try Imagectl.run(["machines", "--json"], environment: setup.environment).stdout == "[]\n")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: setup.environment["IMAGECTL_RUNTIME_DIR"]! + "/machines")) == [])
    }

    @Test func stopOfAnUnknownMachineFails() throws {
        let scratch = try TemporaryDirectory(prefix: "machines-test")
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.path]
        let stop = try Imagectl.run(["stop", "nosuch"], environment: environment)
        #expect(stop.status == 1)
        #expect(stop.stderr == "error: no machine \"nosuch\" is running\n")
        let bad = try Imagectl.run(["stop", "../x"], environment: environment)
        #expect(bad.status == 2)  // a name no machine can have: a usage error
        #expect(bad.stderr.hasPrefix("error: invalid machine name"))
    }

    @Test func aMachineEndedByItselfIsUnregistered() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let setup = try Self.setUp(name: "selfend")
        let background = try Background(["run", "-q", "-D", setup.tree, "sh", "-c", "sleep 1; exit 3"], environment: setup.environment, scratch: setup.scratch)
        #expect(try Self.waitForMachine("selfend", setup, background: background) != nil)
        let status = background.wait(seconds: 20)
        #expect(status == Int32(3))
        #expect(try Imagectl.run(["machines", "--json"], environment: setup.environment).stdout == "[]\n")
    }
}
