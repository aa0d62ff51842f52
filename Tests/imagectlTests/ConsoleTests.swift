import Foundation
import Testing
import TestSupport

/// The console of `imagectl run` and `imagectl shell` as a user meets it: in a terminal (tmux,
/// on its own server socket), a shell gets a prompt, `stty size` shows the window, a resize
/// reaches the pty, and ^] pressed three times ends it.
@Suite("console (pty under tmux)", .serialized)
struct ConsoleTests {
    /// A tmux server of its own running one window of a fixed size.
    final class Tmux: @unchecked Sendable {
        // Immutable after init; deinit kills the server.
        let socket = "imagectl-test-\(UUID().uuidString.prefix(8))"

        /// The test runner may block signals, and a blocked mask survives exec: tmux (which needs
        /// SIGCHLD and SIGWINCH) is started with an empty mask through python3.
        static let unblocked = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])"]

        init(command: String, columns: Int, rows: Int) throws {
            // system(3), not Foundation's Process: the tmux client's exit was seen to go unnoticed
            // by Process (a zombie and a test waiting forever) once tmux daemonised its server.
            let words = ["python3"] + Self.unblocked + ["tmux", "-L", socket, "new-session", "-d", "-s", "t", "-x", "\(columns)", "-y", "\(rows)", command]
            let line = words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            let status = system(line + " </dev/null >/dev/null 2>&1")
            guard status == 0 else { throw Failure(text: "tmux failed to start (\(status))") }
        }

        func send(_ keys: String...) throws { try Tool.run("tmux", ["-L", socket, "send-keys", "-t", "t"] + keys) }
        func resize(columns: Int, rows: Int) throws {
            try Tool.run("tmux", ["-L", socket, "resize-window", "-t", "t", "-x", "\(columns)", "-y", "\(rows)"])
        }
        var screen: String { (try? Tool.run("tmux", ["-L", socket, "capture-pane", "-p", "-t", "t"]).stdout) ?? "" }

        /// Waits until the screen holds `text` (after `after` occurrences seen before).
        func waitFor(_ text: String, count: Int = 1, seconds: Double = 20) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if screen.components(separatedBy: text).count - 1 >= count { return true }
                usleep(50_000)
            }
            return false
        }

        deinit { _ = try? Tool.run("tmux", ["-L", socket, "kill-server"]) }
    }
    struct Failure: Error { var text: String }

    static func waitForFile(_ path: String, seconds: Double = 20) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasSuffix("\n") { return text }
            usleep(50_000)
        }
        return nil
    }

    @Test func runGivesAShellAPtyAndEscapeKillsIt() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("tmux"))
        let scratch = try TemporaryDirectory(prefix: "console-test")
        let tree = scratch.appending("ctree")
        #expect(try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree]).status == 0)
        let exit = scratch.appending("exit")
        let command = "IMAGECTL_RUNTIME_DIR=\(scratch.appending("runtime")) \(Imagectl.binary) run -D \(tree); echo $? > \(exit); sleep 60"
        let tmux = try Tmux(command: command, columns: 97, rows: 31)
        #expect(tmux.waitFor("Press ^] three times within 1s to kill container."))
        #expect(tmux.waitFor("~ #"), "\(tmux.screen)")
        try tmux.send("stty size; tty; [ /dev/console -ef /dev/pts/0 ] && echo console-is-the-pty", "Enter")
        #expect(tmux.waitFor("31 97"), "\(tmux.screen)")
        // The payload's terminal is a pty of the container's devpts, and /dev/console is that pty.
        #expect(tmux.waitFor("/dev/pts/0\n"), "\(tmux.screen)")
        #expect(tmux.waitFor("\nconsole-is-the-pty"), "\(tmux.screen)")
        try tmux.resize(columns: 120, rows: 40)
        // The new size travels tmux -> SIGWINCH -> imagectl -> the container's pty: asked again
        // until it has arrived (a busy machine may take longer than one question).
        var resized = false
        for _ in 0..<10 where !resized {
            try tmux.send("stty size", "Enter")
            resized = tmux.waitFor("40 120", seconds: 2)
        }
        #expect(resized, "\(tmux.screen)")
        try tmux.send("C-]", "C-]", "C-]")
        #expect(Self.waitForFile(exit) == "137\n")
        #expect(tmux.waitFor("Container ctree killed: ^] was pressed three times."), "\(tmux.screen)")
        // Nothing of the container is left running or registered.
        #expect(try Imagectl.run(["machines", "--json"], environment: ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")]).stdout == "[]\n")
    }

    /// A payload killed by the escape in the middle of an escape sequence: the terminal must
    /// still show imagectl's line whole (a half-written CSI would swallow its first letter).
    @Test func escapeInTheMiddleOfAnEscapeSequenceLeavesTheMessageWhole() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("tmux"))
        let scratch = try TemporaryDirectory(prefix: "console-test")
        let tree = scratch.appending("csitree")
        #expect(try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree]).status == 0)
        let exit = scratch.appending("exit")
        let payload = "printf 'payload-ready\\n\\033[1;3'; sleep 60"
        let command = "IMAGECTL_RUNTIME_DIR=\(scratch.appending("runtime")) \(Imagectl.binary) run -q -D \(tree) sh -c \"\(payload)\"; echo $? > \(exit); sleep 60"
        let tmux = try Tmux(command: command, columns: 100, rows: 20)
        #expect(tmux.waitFor("payload-ready"), "\(tmux.screen)")
        try tmux.send("C-]", "C-]", "C-]")
        #expect(Self.waitForFile(exit) == "137\n")
        #expect(tmux.waitFor("Container csitree killed: ^] was pressed three times."), "\(tmux.screen)")
    }

    @Test func shellInARunningContainerGetsItsOwnPty() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("tmux"))
        let scratch = try TemporaryDirectory(prefix: "console-test")
        let tree = scratch.appending("shtree")
        #expect(try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree]).status == 0)
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")]
        let background = Process()
        background.executableURL = URL(fileURLWithPath: Imagectl.binary)
        background.arguments = ["run", "-q", "-D", tree, "sleep", "60"]
        background.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        background.standardInput = FileHandle.nullDevice
        try background.run()
        defer {
            kill(background.processIdentifier, SIGKILL)
            background.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !(try Imagectl.run(["machines"], environment: environment).stdout.contains("shtree")) { usleep(50_000) }

        let exit = scratch.appending("exit")
        let command = "IMAGECTL_RUNTIME_DIR=\(scratch.appending("runtime")) \(Imagectl.binary) shell shtree; echo $? > \(exit); sleep 60"
        let tmux = try Tmux(command: command, columns: 83, rows: 27)
        #expect(tmux.waitFor("Connected to machine shtree."), "\(tmux.screen)")
        #expect(tmux.waitFor("~ #"), "\(tmux.screen)")
        try tmux.send("stty size; hostname; tty", "Enter")
        #expect(tmux.waitFor("27 83\nshtree\n/dev/pts/"), "\(tmux.screen)")
        try tmux.send("exit 4", "Enter")
        #expect(Self.waitForFile(exit) == "4\n")

        // ^]^]^] ends a session too (the container keeps running).
        let exit2 = scratch.appending("exit2")
        let tmux2 = try Tmux(command: "IMAGECTL_RUNTIME_DIR=\(scratch.appending("runtime")) \(Imagectl.binary) shell shtree; echo $? > \(exit2); sleep 60",
                             columns: 80, rows: 24)
        #expect(tmux2.waitFor("~ #"), "\(tmux2.screen)")
        try tmux2.send("C-]", "C-]", "C-]")
        #expect(Self.waitForFile(exit2) == "137\n")
        #expect(background.isRunning)
    }
}
