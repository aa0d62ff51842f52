import Foundation

/// Running programs from tests: peers (systemd-import, veritysetup), fixtures builders and the
/// imagectl binary itself.
public enum Tool {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var stdoutData: Data
    }

    /// The full path of `name` on PATH (plus the sbin directories root has), or nil.
    public static func path(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/lib/systemd", "/usr/lib/systemd"]
        for dir in dirs {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs a program to completion, collecting its output. `stdin` is fed from a file when given.
    @discardableResult
    public static func run(_ program: String, _ arguments: [String], stdin: String? = nil,
                           environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path(program) ?? program)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("imagectl-test-\(UUID().uuidString).out")
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("imagectl-test-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        // Files rather than pipes: a chatty child cannot block on a full pipe while we wait.
        let outHandle = try FileHandle(forWritingTo: out)
        let errHandle = try FileHandle(forWritingTo: err)
        process.standardOutput = outHandle
        process.standardError = errHandle
        if let stdin {
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: stdin))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        let outData = (try? Data(contentsOf: out)) ?? Data()
        let errData = (try? Data(contentsOf: err)) ?? Data()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(status: status, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self), stdoutData: outData)
    }
}

/// The imagectl binary built next to the test bundle.
public enum Imagectl {
    public static var binary: String {
        if let explicit = ProcessInfo.processInfo.environment["IMAGECTL_BINARY"] { return explicit }
        // swift test runs <build>/debug/imagectlPackageTests.xctest; the executable sits beside it.
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("imagectl").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "imagectl"
    }

    /// Runs `imagectl ARGS` with the pool at `root` (when given).
    @discardableResult
    public static func run(_ arguments: [String], root: String? = nil, stdin: String? = nil,
                           environment: [String: String] = [:]) throws -> Tool.Result {
        // The pool is passed through the environment, as a user's shell would, so that every verb
        // (whatever its options) sees it.
        var env = environment
        if let root { env["IMAGECTL_ROOT"] = root }
        return try Tool.run(binary, arguments, stdin: stdin, environment: env)
    }
}

/// A scratch directory removed when the value goes away.
public final class TemporaryDirectory: @unchecked Sendable {
    // Immutable after init; the deinit only removes the directory.
    public let path: String

    public init(prefix: String = "imagectl-test", under parent: String? = nil) throws {
        let base = parent ?? ProcessInfo.processInfo.environment["IMAGECTL_TEST_TMP"] ?? FileManager.default.temporaryDirectory.path
        let dir = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        path = dir
    }

    public func appending(_ component: String) -> String { "\(path)/\(component)" }

    deinit {
        // Clear immutable flags first so a test that set chattr +i cannot leave litter behind.
        _ = try? Tool.run("chattr", ["-R", "-i", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}
