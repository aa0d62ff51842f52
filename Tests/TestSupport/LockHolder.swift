import Foundation

/// Another process that holds an OFD lock (fcntl F_OFD_SETLK) on a file until stopped: what a
/// running container does to its image. Uses python3 (scripts/install-deps.sh installs it), because
/// a lock held by this test process would not show how a second process sees it.
public final class LockHolder: @unchecked Sendable {
    // Set once in init; `stop` is called by the owning test only.
    private let process: Process
    public var pid: Int32 { process.processIdentifier }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts the holder and waits until it has the lock. `exclusive`: F_WRLCK, else F_RDLCK.
    public init(path: String, exclusive: Bool = true) throws {
        let ready = FileManager.default.temporaryDirectory.appendingPathComponent("imagectl-lock-\(UUID().uuidString)").path
        let script = """
            import fcntl, os, struct, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
            lock = struct.pack('hhqqi4x', fcntl.F_WRLCK if sys.argv[3] == 'x' else fcntl.F_RDLCK, 0, 0, 0, 0)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
            open(sys.argv[2], 'w').close()
            while True:
                time.sleep(60)
            """
        process = Process()
        process.executableURL = URL(fileURLWithPath: Tool.path("python3") ?? "/usr/bin/python3")
        process.arguments = ["-c", script, path, ready, exclusive ? "x" : "s"]
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: ready) {
            if !process.isRunning { throw Failure(description: "lock holder exited with \(process.terminationStatus)") }
            if Date() > deadline {
                process.terminate()
                throw Failure(description: "lock holder did not take the lock")
            }
            usleep(20_000)
        }
        try? FileManager.default.removeItem(atPath: ready)
    }

    /// Kills the holder (the kernel drops its lock) and waits for it. SIGKILL, because the test
    /// runner's blocked signals are inherited by the child and may include SIGTERM.
    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        stop()
    }
}
