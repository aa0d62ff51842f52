import CShims
import Foundation
import Glibc
import LinuxSystem
import Synchronization
import SystemPackage

/// The parts of a start the C child needs, as Swift values (converted to C in `start`).
struct ChildSpec {
    var directory: String
    /// The root and every mount (SetupPlan), built from the options by `Container.run`.
    var plan: SetupPlan
    var privateNetwork: Bool
    var asPID2: Bool
    var hostname: String
    var payload: PayloadDescription
    var cgroupDirectories: [String]
    /// Give the payload a pty; its master is received into `ContainerProcess.consoleMaster`.
    var console = false
    /// Resource limits, OOM score adjustment, CPU affinity.
    var limits = ProcessSettings()
    /// --private-users=: the namespace fd.
    var userNamespaceFD: Int32? = nil
    /// The notification socket the child binds at /run/host/notify; -1: none.
    var notifySocket: Int32 = -1
    /// --network-namespace-path=: the namespace the child joins; -1: none.
    var networkNamespaceFD: Int32 = -1
}

/// How the container's PID 1 ended.
public enum ContainerTermination: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)
}

/// A started container child (see CShimsContainer.h for the process model).
final class ContainerProcess {
    let pid: pid_t
    private let pidfd: Int32
    /// The master of the payload's pty (spec.console).
    private(set) var consoleMaster: FileDescriptor?
    /// PID 1's pidfd (readable once it exited), for the console relay; not to be closed.
    var exitDescriptor: FileDescriptor? { pidfd >= 0 ? FileDescriptor(rawValue: pidfd) : nil }

    private init(pid: pid_t, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    /// clone()s the child, and returns once it exec'd the payload; a failed set-up step is
    /// thrown (the child is reaped first). `beforePayload`, when given, runs once the container's
    /// PID 1 exists and its set-up is under way, and the payload starts only after it returned
    /// (host-side set-up that needs the container's PID, such as its network links); when it
    /// throws, the container is killed and the error thrown.
    static func start(_ spec: ChildSpec, beforePayload: ((pid_t) throws -> Void)? = nil) throws -> ContainerProcess {
        let arena = ChildArena()
        var consoleSockets: [Int32] = [-1, -1]
        if spec.console { try makeSocketPair(&consoleSockets) }
        defer { for fd in consoleSockets where fd >= 0 { close(fd) } }
        // With a user namespace the child reports the host PID of the container's PID 1 here (see container.c).
        var pidPipe: [Int32] = [-1, -1]
        if spec.userNamespaceFD != nil { try makeSocketPair(&pidPipe) }
        defer { for fd in pidPipe where fd >= 0 { close(fd) } }
        var proceed: [Int32] = [-1, -1]
        if beforePayload != nil { try makeSocketPair(&proceed) }
        defer { for fd in proceed where fd >= 0 { close(fd) } }

        var config = img_container_config()
        config.directory = arena.string(spec.directory)
        config.ops = arena.operations(spec.plan)
        config.op_count = spec.plan.steps.count
        config.private_network = spec.privateNetwork ? 1 : 0
        config.netns_fd = spec.networkNamespaceFD
        config.as_pid2 = spec.asPID2 ? 1 : 0
        config.hostname = arena.string(spec.hostname)
        config.payload = arena.payload(spec.payload)
        config.cgroup_directories = arena.stringList(spec.cgroupDirectories)
        config.console = spec.console ? 1 : 0
        config.console_socket = consoleSockets[1]
        config.resource_limits = arena.array(spec.limits.resourceLimits.map {
            img_resource_limit(resource: $0.resource, soft: $0.soft, hard: $0.hard)
        })
        config.resource_limit_count = spec.limits.resourceLimits.count
        config.oom_score_adjust_set = spec.limits.oomScoreAdjust == nil ? 0 : 1
        config.oom_score_adjust = spec.limits.oomScoreAdjust ?? 0
        config.cpu_mask = arena.array(spec.limits.cpuMaskWords)
        config.cpu_mask_words = spec.limits.cpuMaskWords.count
        config.personality_set = spec.limits.personality == nil ? 0 : 1
        config.personality = UInt(spec.limits.personality ?? 0)
        config.userns = spec.userNamespaceFD == nil ? 0 : 1
        config.userns_fd = spec.userNamespaceFD ?? -1
        config.userns_pid_pipe = pidPipe[1]
        config.proceed_fd = proceed[1]
        config.notify_socket = spec.notifySocket
        var errorFD: Int32 = -1
        let child = img_container_start(&config, &errorFD)
        withExtendedLifetime(arena) {}  // the child has its own copy once clone returned
        guard child > 0 else { throw RunnerError.startFailed(step: "clone", errno: errno) }
        defer { close(errorFD) }
        // With a user namespace PID 1 is a grandchild handed over by the child (see container.c).
        let pid = spec.userNamespaceFD == nil ? child
            : try awaitUserNamespaceLeader(child: child, pidPipe: &pidPipe, errorFD: errorFD)
        if let beforePayload {
            do {
                try beforePayload(pid)
            } catch {
                _ = Glibc.kill(pid, SIGKILL)
                // A failed set-up step of the child says more than what it made fail here.
                try ChildStart.awaitExec(errorFD: errorFD, pid: pid, who: "child")
                _ = try? ChildStart.waitForExit(pid)
                throw error
            }
            var go: UInt8 = 1
            _ = write(proceed[0], &go, 1)
        }

        // EOF: the payload was exec'd. Otherwise one report of the failed step.
        try ChildStart.awaitExec(errorFD: errorFD, pid: pid, who: "child")
        let pidfd = img_pidfd_open(pid, 0)
        let process = ContainerProcess(pid: pid, pidfd: pidfd)
        if spec.console {
            close(consoleSockets[1])
            consoleSockets[1] = -1
            let master = img_receive_fd(consoleSockets[0])
            guard master >= 0 else {
                let code = errno
                process.kill()
                _ = try? process.wait()
                throw RunnerError.startFailed(step: "receiving the console pty", errno: code)
            }
            process.consoleMaster = FileDescriptor(rawValue: master)
        }
        return process
    }

    private static func makeSocketPair(_ fds: inout [Int32]) throws {
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw RunnerError.startFailed(step: "socketpair", errno: errno)
        }
    }

    /// From now on a SIGTERM/SIGINT to imagectl sends `signal` to PID 1 of the container (what
    /// `imagectl stop` does) and, when PID 1 has not ended `timeout` seconds later, SIGKILL, so
    /// that no container outlives its `imagectl run`; a second SIGTERM/SIGINT sends SIGKILL at
    /// once. The timeout is kept by a watchdog thread that the C handler wakes through a socket
    /// (a signal handler can neither sleep nor start a thread); the thread holds its own dup of
    /// the pidfd and ends when PID 1 does.
    func forwardTerminationSignals(as signal: Int32, timeout: Double) {
        guard pidfd >= 0 else { return }
        var wake: [Int32] = [-1, -1]
        let watched = fcntl(pidfd, F_DUPFD_CLOEXEC, 3)
        guard watched >= 0,
              socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &wake) == 0 else {
            // Without the watchdog the signal is still forwarded, only never escalated.
            if watched >= 0 { close(watched) }
            _ = img_container_forward_signals(pidfd, signal, -1)
            return
        }
        let watchdog = StopWatchdog(pidfd: watched, wake: wake[0], timeout: timeout)
        let thread = Thread { watchdog.run() }
        thread.start()
        // The write end stays open for the handler for the rest of imagectl's short life.
        _ = img_container_forward_signals(pidfd, signal, wake[1])
    }

    /// True when the stop timeout passed after a SIGTERM/SIGINT and PID 1 was SIGKILLed.
    var stopTimedOut: Bool { StopWatchdog.fired.load(ordering: .sequentiallyConsistent) }

    /// Sends `signal` (default SIGKILL) to PID 1 through its pidfd (never a recycled PID).
    func kill(_ signal: Int32 = SIGKILL) {
        if pidfd >= 0 { _ = img_pidfd_send_signal(pidfd, signal) }
    }

    /// Waits for PID 1 to end.
    func wait() throws -> ContainerTermination {
        let termination = try ChildStart.waitForExit(pid)
        img_container_forward_stop()
        if pidfd >= 0 { close(pidfd) }
        return termination
    }
}

/// Host-side file system helpers for the start (mkdir/rmdir of the staging directory, the
/// image root as a descriptor for reads beneath it).
enum HostFiles {
    static func makeStagingDirectory(_ path: String) throws {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { throw RunnerError.startFailed(step: "mkdir \(prefix)", errno: errno) }
        }
    }

    static func removeDirectory(_ path: String) { _ = rmdir(path) }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static var processID: Int32 { getpid() }
}

extension ContainerProcess {
    /// With a user namespace: the child hands the container's PID 1 (cloned with CLONE_PARENT, so imagectl's own child)
    /// over the pipe and exits. Returns that PID; a failed step is thrown as usual.
    static func awaitUserNamespaceLeader(child: pid_t, pidPipe: inout [Int32], errorFD: Int32) throws -> pid_t {
        close(pidPipe[1])
        pidPipe[1] = -1
        var leader: pid_t = 0
        var got = 0
        withUnsafeMutableBytes(of: &leader) { raw in
            while got < raw.count {
                let n = read(pidPipe[0], raw.baseAddress! + got, raw.count - got)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                got += n
            }
        }
        guard got == MemoryLayout<pid_t>.size, leader > 0 else {
            // The child failed before it cloned PID 1: its report is on the error pipe.
            try ChildStart.awaitExec(errorFD: errorFD, pid: child, who: "child")
            _ = try? ChildStart.waitForExit(child)
            throw RunnerError.startFailed(step: "user namespace child ended without a report", errno: 0)
        }
        _ = try? ChildStart.waitForExit(child)
        return leader
    }

    static var signalForwarded: Bool { img_container_signal_forwarded() != 0 }
}

extension HostFiles {
    /// The host's device nodes of `names` (under /dev), whose modes and numbers the container's
    /// /dev copies. A missing one, or one that is no character device, is an error.
    static func deviceNodes(_ names: [String]) throws -> [SetupPlan.Input.HostDevice] {
        try names.map { name in
            let status = try FileStatus.stat("/dev/\(name)")
            guard status.kind == .characterDevice else { throw RunnerError.startFailed(step: "stat host device /dev/\(name)", errno: ENODEV) }
            return .init(name: name, mode: status.permissions, device: status.deviceNumber)
        }
    }

    /// Whether a path exists beneath the tree at `directory` (resolved in it, as the child would).
    static func pathExists(beneath directory: String) -> @Sendable (String) -> Bool {
        { path in
            guard let root = try? FileDescriptor.open(directory, .readOnly, options: [.directory, .closeOnExec]) else { return false }
            defer { try? root.close() }
            return OpenBeneath.exists(path, in: root)
        }
    }
}

/// Waits for the forwarding handler's byte, then for PID 1's end for the stop timeout, and
/// SIGKILLs it when the timeout passes. Sendable: its descriptors are owned by the one thread
/// that runs it (and closed there); `fired` is atomic.
final class StopWatchdog: Sendable {
    static let fired = Atomic<Bool>(false)
    let pidfd: Int32
    let wake: Int32
    let timeout: Double

    init(pidfd: Int32, wake: Int32, timeout: Double) {
        self.pidfd = pidfd
        self.wake = wake
        self.timeout = timeout
    }

    func run() {
        defer {
            close(pidfd)
            close(wake)
        }
        // Until a SIGTERM/SIGINT arrives or PID 1 ends by itself.
        while true {
            var fds = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0), pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 || fds[1].revents != 0 { return }
            if fds[0].revents != 0 { break }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { break }
            var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left, 3600) * 1000) + 1)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { break }
        }
        Self.fired.store(true, ordering: .sequentiallyConsistent)
        _ = img_pidfd_send_signal(pidfd, SIGKILL)
    }
}
