import CShims
import Glibc

/// A machine's leader held by a pidfd (pidfd_open(2)), so that a signal reaches that process
/// and never one that took its PID after it ended (pidfd_send_signal(2)), and so that its end
/// can be waited for although it is not our child (a pidfd polls readable once the process
/// exited).
final class LeaderHandle {
    enum Failure: Error {
        /// The process has ended (ESRCH).
        case gone
        case failed(errno: Int32)

        init(errno code: Int32) { self = code == ESRCH ? .gone : .failed(errno: code) }
    }

    private let pidfd: Int32

    init(_ pid: Int32) throws(Failure) {
        let fd = img_pidfd_open(pid, 0)
        guard fd >= 0 else { throw Failure(errno: img_errno()) }
        pidfd = fd
    }

    deinit { close(pidfd) }

    func send(_ signal: Int32) throws(Failure) {
        guard img_pidfd_send_signal(pidfd, signal) == 0 else { throw Failure(errno: img_errno()) }
    }

    /// Waits up to `seconds` for the process to end: poll(2) on the pidfd. True when it ended.
    func waitForExit(seconds: Double) -> Bool {
        let deadline = MonotonicClock.now + seconds
        while true {
            let left = deadline - MonotonicClock.now
            var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(max(0, min(left, 3600)) * 1000))
            if ready > 0 { return true }
            if ready < 0 && errno == EINTR { continue }
            if left <= 0 || ready == 0 && MonotonicClock.now >= deadline { return false }
        }
    }
}

/// CLOCK_MONOTONIC in seconds, for timeouts that a changed wall clock must not stretch.
enum MonotonicClock {
    static var now: Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The processes of a machine's cgroup (`kill --kill-whom=all`), and plain kill(2) for them.
enum CgroupProcesses {
    /// Every PID in `directory` and the cgroups below it (systemd inside a container makes its
    /// own), from their cgroup.procs files.
    static func pids(under directory: String) -> [Int32] {
        var result: [Int32] = []
        if let text = try? readText(directory + "/cgroup.procs") {
            result += text.split(separator: "\n").compactMap { Int32($0) }
        }
        guard let dir = opendir(directory) else { return result }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard entry.pointee.d_type == DT_DIR, name != ".", name != ".." else { continue }
            result += pids(under: directory + "/" + name)
        }
        return result
    }

    static func readText(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LeaderHandle.Failure(errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > 1 << 22 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// kill(2); false when the process was gone already.
    static func send(_ signal: Int32, to pid: Int32) -> Bool { kill(pid, signal) == 0 }
}
