import Foundation
import Testing
import TestSupport

/// User-given paths and arguments (SECURITY.md 26, 27): a FIFO, socket or character device given
/// as an image is refused at once, leaving no lock and no mount; a signalled verb ends within a
/// second; an argument that is not valid UTF-8 is refused instead of naming another file.
@Suite("user-given inputs", .serialized)
struct UserInputCLITests {
    struct Timed {
        var status: Int32
        var stdout: String
        var stderr: String
        var seconds: Double
        /// True when the process had to be killed at the deadline (it hung).
        var hung: Bool
    }

    /// Runs imagectl with a deadline: a hang (the bug these tests guard against) becomes a
    /// failed expectation, not a test run that never ends. `stdin` nil: /dev/null.
    static func run(_ arguments: [String], environment: [String: String], stdin: FileHandle? = nil,
                    deadline: Double = 5, afterStart: ((Process) -> Void)? = nil) throws -> Timed {
        let scratch = try TemporaryDirectory(prefix: "timed-run")
        let out = scratch.appending("out"), err = scratch.appending("err")
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardInput = stdin ?? FileHandle.nullDevice
        let start = Date()
        try process.run()
        afterStart?(process)
        var hung = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > deadline {
                hung = true
                kill(process.processIdentifier, SIGKILL)
                break
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        return Timed(status: process.terminationStatus,
                     stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                     stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "",
                     seconds: seconds, hung: hung)
    }

    /// A scratch directory with a FIFO, a listening UNIX socket and the private lock and runtime
    /// directories the verbs are pointed at.
    final class Inputs: @unchecked Sendable {
        // Immutable after init; deinit removes the directory (and with it the socket).
        let scratch: TemporaryDirectory
        var fifo: String { scratch.appending("image.raw") }
        var socket: String { scratch.appending("socket.raw") }
        var locks: String { scratch.appending("locks") }
        var runtime: String { scratch.appending("runtime") }
        var mountPoint: String { scratch.appending("mnt") }
        var pool: String { scratch.appending("pool") }
        var environment: [String: String] {
            ["IMAGECTL_LOCK_DIR": locks, "IMAGECTL_RUNTIME_DIR": runtime, "IMAGECTL_ROOT": pool]
        }

        init() throws {
            scratch = try TemporaryDirectory(prefix: "user-input")
            guard mkfifo(fifo, 0o600) == 0 else { throw Failure(text: "mkfifo failed") }
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
            // A socket file that stays after python exits (bind creates it; nobody unlinks it).
            let r = try Tool.run("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", socket])
            guard r.status == 0 else { throw Failure(text: r.stderr) }
        }

        /// Lock files left anywhere: the global lock directory and `.#*.lck` beside the inputs.
        func leftLocks() -> [String] {
            let global = (try? FileManager.default.contentsOfDirectory(atPath: locks)) ?? []
            let beside = ((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []).filter { $0.hasSuffix(".lck") }
            let dev = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev")) ?? []).filter { $0 == ".#zero.lck" }
            return global + beside + dev
        }

        /// Mounts whose target lies in the scratch directory.
        func mounts() -> [String] {
            let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map(String.init).filter { $0.contains(scratch.path) }
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }

    /// The commands that take IMAGE, for one input path.
    static func commands(_ image: String, _ inputs: Inputs) -> [[String]] {
        [
            ["run", "-q", "-i", image, "/bin/true"],
            ["dissect", image],
            ["validate", image],
            ["verify", image],
            ["mount", image, inputs.mountPoint],
            ["copy-from", image, "/etc/os-release", inputs.scratch.appending("copied")],
            ["import-raw", image, "fromfifo"],
            ["vm", "-i", image, "--print-command"],
        ]
    }

    static func expectRefusedAtOnce(_ arguments: [String], _ inputs: Inputs, what: String,
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try run(arguments, environment: inputs.environment)
        let line = arguments.joined(separator: " ")
        #expect(!r.hung, "\(line): hung", sourceLocation: sourceLocation)
        // A wait for a FIFO's writer is caught by the deadline as a hang; this bound is for "at
        // once", loose enough for a debug build starting on a machine with both cores busy.
        #expect(r.seconds < 3, "\(line): took \(r.seconds) s", sourceLocation: sourceLocation)
        #expect(r.status == 1, "\(line): exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        #expect(errors.count == 1 && errors[0].contains(what), "\(line): \(r.stderr)", sourceLocation: sourceLocation)
        #expect(inputs.leftLocks().isEmpty, "\(line): locks left: \(inputs.leftLocks())", sourceLocation: sourceLocation)
        #expect(inputs.mounts().isEmpty, "\(line): mounted: \(inputs.mounts())", sourceLocation: sourceLocation)
        let pool = ((try? FileManager.default.contentsOfDirectory(atPath: inputs.pool)) ?? []).filter { !$0.hasSuffix(".lck") }
        #expect(pool.isEmpty, "\(line): left in the pool: \(pool)", sourceLocation: sourceLocation)
    }

    @Test("a FIFO given as an image is refused at once by every verb, leaving no lock or mount")
    func fifoAsImage() throws {
        try Privileged.require(.root, .tool("python3"))
        let inputs = try Inputs()
        for arguments in Self.commands(inputs.fifo, inputs) {
            try Self.expectRefusedAtOnce(arguments, inputs, what: "is a FIFO")
        }
    }

    @Test("a UNIX socket given as an image is refused at once by every verb")
    func socketAsImage() throws {
        try Privileged.require(.root, .tool("python3"))
        let inputs = try Inputs()
        for arguments in Self.commands(inputs.socket, inputs) {
            try Self.expectRefusedAtOnce(arguments, inputs, what: "is a socket")
        }
    }

    @Test("/dev/zero given as an image is refused at once by every verb")
    func characterDeviceAsImage() throws {
        try Privileged.require(.root, .tool("python3"))
        let inputs = try Inputs()
        for arguments in Self.commands("/dev/zero", inputs) {
            try Self.expectRefusedAtOnce(arguments, inputs, what: "is a character device")
        }
    }

    @Test("run -D of a FIFO and import-fs of a FIFO are refused at once")
    func fifoAsTree() throws {
        try Privileged.require(.root, .tool("python3"))
        let inputs = try Inputs()
        try Self.expectRefusedAtOnce(["run", "-q", "-D", inputs.fifo, "/bin/true"], inputs, what: "is a FIFO")
        try Self.expectRefusedAtOnce(["import-tar", inputs.fifo, "fromfifo"], inputs, what: "is a FIFO")
        let r = try Self.run(["import-fs", inputs.fifo, "fromfifo"], environment: inputs.environment)
        #expect(!r.hung && r.seconds < 1 && r.status == 1, "\(r.stderr)")
    }

    // MARK: - signals

    @Test("SIGTERM ends an import-raw blocked on a silent stdin pipe within a second, leaving no temporary")
    func terminateBlockedImport() throws {
        try Privileged.require(.root, .tool("python3"))
        let inputs = try Inputs()
        for signal in [SIGTERM, SIGINT] {
            // A pipe whose write end we hold and never write to: the import blocks in read(2).
            let pipe = Pipe()
            var signalled: Date?
            let r = try Self.run(["import-raw", "-", "silent"], environment: inputs.environment,
                                 stdin: pipe.fileHandleForReading, deadline: 10) { process in
                Poll.until(timeout: 5) {
                    let entries = (try? FileManager.default.contentsOfDirectory(atPath: inputs.pool)) ?? []
                    return entries.contains { $0.hasPrefix(".#silent") && !$0.hasSuffix(".lck") }
                }
                Thread.sleep(forTimeInterval: 0.2)
                signalled = Date()
                kill(process.processIdentifier, signal)
            }
            let afterSignal = signalled.map { Date().timeIntervalSince($0) } ?? r.seconds
            try? pipe.fileHandleForWriting.close()
            #expect(!r.hung)
            #expect(afterSignal < 1, "exited \(afterSignal) s after \(signal)")
            #expect(r.status == 128 + signal, "exit \(r.status): \(r.stderr)")
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: inputs.pool)) ?? []).filter { !$0.hasSuffix(".lck") }
            #expect(left.isEmpty, "left in the pool: \(left)")
        }
    }

    // MARK: - arguments that are not UTF-8

    /// Runs imagectl through bash so that `$'...\xff'` reaches it as raw bytes (Foundation's
    /// Process only takes Strings, which cannot hold them).
    static func runRaw(_ script: String, environment: [String: String]) throws -> Tool.Result {
        try Tool.run("/bin/bash", ["-c", "exec \"$0\" " + script, Imagectl.binary], environment: environment)
    }

    @Test("run -D with a path that is not UTF-8 exits 2 and never runs the U+FFFD decoy tree")
    func runNonUTF8Directory() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let inputs = try Inputs()
        let decoy = inputs.scratch.appending("tree\u{FFFD}")
        let copy = try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", decoy])
        #expect(copy.status == 0, "\(copy.stderr)")
        try "DECOY-MARKER\n".write(toFile: decoy + "/marker", atomically: false, encoding: .utf8)
        let r = try Self.runRaw("run -q -D $'\(inputs.scratch.path)/tree\\xff' cat /marker", environment: inputs.environment)
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr == "error: argument 4 is not valid UTF-8: \(inputs.scratch.path)/tree\\xff\n")
        #expect(!r.stdout.contains("DECOY-MARKER"))
        #expect(inputs.leftLocks().isEmpty, "\(inputs.leftLocks())")
    }

    @Test("import-tar of a path that is not UTF-8 exits 2 and never imports the U+FFFD decoy")
    func importTarNonUTF8Path() throws {
        try Privileged.require(.root, .fixture("busybox.tar"))
        let inputs = try Inputs()
        let decoy = inputs.scratch.appending("x\u{FFFD}.tar")
        try FileManager.default.copyItem(atPath: Fixtures.path("busybox.tar") ?? "", toPath: decoy)
        let r = try Self.runRaw("import-tar $'\(inputs.scratch.path)/x\\xff.tar' decoy", environment: inputs.environment)
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: argument 2 is not valid UTF-8: "), "\(r.stderr)")
        #expect(r.stderr.contains("x\\xff.tar"))
        let pool = ((try? FileManager.default.contentsOfDirectory(atPath: inputs.pool)) ?? []).filter { !$0.hasSuffix(".lck") }
        #expect(pool.isEmpty, "imported: \(pool)")
    }

    @Test("an option value that is not UTF-8 is refused too, before parsing (no root needed)")
    func optionValueNonUTF8() throws {
        // In a scratch directory: without the check, list creates the (decoded) pool directory.
        let scratch = try TemporaryDirectory(prefix: "user-input")
        let r = try Self.runRaw("list --root=$'\(scratch.path)/\\xc3\\x28'", environment: [:])
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr == "error: argument 2 is not valid UTF-8: --root=\(scratch.path)/\\xc3(\n")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []).isEmpty)
    }
}
