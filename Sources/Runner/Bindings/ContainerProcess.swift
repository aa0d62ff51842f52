import CShims
import Glibc
import SystemPackage

/// The parts of a start the C child needs, as Swift values (converted to C in `start`).
struct ChildSpec {
    var directory: String
    var staging: String
    var ephemeral: Bool
    var readOnly: Bool
    var privateNetwork: Bool
    var asPID2: Bool
    var hostname: String
    var argv: [String]
    var environment: [String]
    var workingDirectory: String
    var uid: UInt32
    var gid: UInt32
    var groups: [UInt32]
    var capabilities: UInt64
    var noNewPrivileges: Bool
    var seccompProgram: [UInt8]
    var cgroupLayout: CgroupTree.HostLayout
    var cgroupDirectories: [String]
    /// Give the payload a pty; its master is received into `ContainerProcess.consoleMaster`.
    var console = false
    /// Resource limits, OOM score adjustment, CPU affinity.
    var limits = ProcessSettings()
    /// Extra mounts in the order the child makes them.
    var mounts: [ExtraMount] = []
    /// --volatile=yes: a tmpfs root with the tree's /usr read-only.
    var volatileRoot = false
    /// --resolv-conf=, --timezone= (decided by EtcFiles).
    var resolvConf = EtcFilePlan()
    var localtime = EtcFilePlan()
    /// --private-users=: the namespace fd, the host ID of its root, and whether the root is ID-mapped.
    var userNamespace: (fd: Int32, base: UInt32, idmapRoot: Bool)? = nil
    /// Host bind sources without idmap/noidmap are ID-mapped (imagectl's default user namespace).
    var idmapBindsByDefault = false
    /// The notification socket the child binds at /run/host/notify; -1: none.
    var notifySocket: Int32 = -1
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
    /// thrown (the child is reaped first).
    static func start(_ spec: ChildSpec) throws -> ContainerProcess {
        var owned: [UnsafeMutablePointer<CChar>] = []
        defer { owned.forEach { free($0) } }
        func c(_ s: String) -> UnsafePointer<CChar> {
            let p = strdup(s)!
            owned.append(p)
            return UnsafePointer(p)
        }
        func list(_ items: [String]) -> [UnsafePointer<CChar>?] { items.map { c($0) } + [nil] }

        let argv = list(spec.argv)
        let envp = list(spec.environment)
        let cgroupDirectories = list(spec.cgroupDirectories)
        let controllers = list(spec.cgroupLayout.controllers)
        let groups = spec.groups.map { gid_t($0) }
        let childMounts = try ChildMounts(spec.mounts, idmapBindsByDefault: spec.idmapBindsByDefault)
        // The copies' bytes, owned here until the child was started (it reads its own copy).
        let resolvBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, spec.resolvConf.contents.count), alignment: 1)
        defer { resolvBytes.deallocate() }
        resolvBytes.copyBytes(from: spec.resolvConf.contents)
        let localtimeBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, spec.localtime.contents.count), alignment: 1)
        defer { localtimeBytes.deallocate() }
        localtimeBytes.copyBytes(from: spec.localtime.contents)
        func etcFile(_ plan: EtcFilePlan, _ bytes: UnsafeMutableRawBufferPointer) -> img_etc_file {
            var f = img_etc_file()
            f.steps = plan.steps.rawValue
            f.replace = plan.replace ? 1 : 0
            f.host_path = c(plan.hostPath)
            f.contents = UnsafeRawPointer(bytes.baseAddress)
            f.size = plan.contents.count
            f.link_target = c(plan.linkTarget)
            f.link_check = c(plan.linkCheck)
            return f
        }
        let resolvConf = etcFile(spec.resolvConf, resolvBytes)
        let localtime = etcFile(spec.localtime, localtimeBytes)
        // Plain allocations rather than more nested withUnsafeBufferPointer closures; freed on return.
        let resourceLimits = UnsafeMutablePointer<img_resource_limit>.allocate(capacity: max(1, spec.limits.resourceLimits.count))
        defer { resourceLimits.deallocate() }
        for (i, limit) in spec.limits.resourceLimits.enumerated() {
            resourceLimits[i] = img_resource_limit(resource: limit.resource, soft: limit.soft, hard: limit.hard)
        }
        let maskWords = spec.limits.cpuMaskWords
        let cpuMask = UnsafeMutablePointer<UInt64>.allocate(capacity: max(1, maskWords.count))
        defer { cpuMask.deallocate() }
        for (i, word) in maskWords.enumerated() { cpuMask[i] = word }
        var consoleSockets: [Int32] = [-1, -1]
        if spec.console {
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &consoleSockets) == 0 else {
                throw RunnerError.startFailed(step: "socketpair", errno: errno)
            }
        }
        defer { for fd in consoleSockets where fd >= 0 { close(fd) } }
        // With a user namespace the child reports the host PID of the container's PID 1 here (see container.c).
        var pidPipe: [Int32] = [-1, -1]
        if spec.userNamespace != nil {
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pidPipe) == 0 else {
                throw RunnerError.startFailed(step: "socketpair", errno: errno)
            }
        }
        defer { for fd in pidPipe where fd >= 0 { close(fd) } }
        var errorFD: Int32 = -1
        let clonedPID: pid_t = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envBuffer in
                cgroupDirectories.withUnsafeBufferPointer { cgroupBuffer in
                    controllers.withUnsafeBufferPointer { controllerBuffer in
                        groups.withUnsafeBufferPointer { groupBuffer in
                            spec.seccompProgram.withUnsafeBytes { program in
                                var config = img_container_config()
                                config.directory = c(spec.directory)
                                config.staging = c(spec.staging)
                                config.ephemeral = spec.ephemeral ? 1 : 0
                                config.read_only = spec.readOnly ? 1 : 0
                                config.private_network = spec.privateNetwork ? 1 : 0
                                config.as_pid2 = spec.asPID2 ? 1 : 0
                                config.hostname = c(spec.hostname)
                                config.argv = argvBuffer.baseAddress
                                config.envp = envBuffer.baseAddress
                                config.working_directory = c(spec.workingDirectory)
                                config.uid = spec.uid
                                config.gid = spec.gid
                                config.groups = groupBuffer.baseAddress
                                config.group_count = groupBuffer.count
                                config.capabilities = spec.capabilities
                                config.no_new_privileges = spec.noNewPrivileges ? 1 : 0
                                config.seccomp_program = program.baseAddress
                                config.seccomp_program_size = program.count
                                config.cgroup_layout = spec.cgroupLayout.unified ? IMG_CGROUP_UNIFIED : IMG_CGROUP_LEGACY
                                config.cgroup_directories = cgroupBuffer.baseAddress
                                config.cgroup_controllers = controllerBuffer.baseAddress
                                config.cgroup_hybrid = spec.cgroupLayout.hybrid ? 1 : 0
                                config.mounts = UnsafePointer(childMounts.table)
                                config.mount_count = childMounts.count
                                config.volatile_root = spec.volatileRoot ? 1 : 0
                                config.console = spec.console ? 1 : 0
                                config.console_socket = consoleSockets[1]
                                config.resource_limits = UnsafePointer(resourceLimits)
                                config.resource_limit_count = spec.limits.resourceLimits.count
                                config.oom_score_adjust_set = spec.limits.oomScoreAdjust == nil ? 0 : 1
                                config.oom_score_adjust = spec.limits.oomScoreAdjust ?? 0
                                config.cpu_mask = UnsafePointer(cpuMask)
                                config.cpu_mask_words = maskWords.count
                                config.personality_set = spec.limits.personality == nil ? 0 : 1
                                config.personality = UInt(spec.limits.personality ?? 0)
                                config.resolv_conf = resolvConf
                                config.localtime = localtime
                                if let userNamespace = spec.userNamespace {
                                    config.userns = 1
                                    config.userns_fd = userNamespace.fd
                                    config.userns_base = userNamespace.base
                                    config.userns_idmap_root = userNamespace.idmapRoot ? 1 : 0
                                    config.userns_pid_pipe = pidPipe[1]
                                }
                                config.notify_socket = spec.notifySocket
                                return img_container_start(&config, &errorFD)
                            }
                        }
                    }
                }
            }
        }
        withExtendedLifetime(childMounts) {}  // the child has its own copy once clone returned
        let child = clonedPID
        guard child > 0 else { throw RunnerError.startFailed(step: "clone", errno: errno) }
        defer { close(errorFD) }
        // With a user namespace PID 1 is a grandchild handed over by the child (see container.c).
        let pid = spec.userNamespace == nil ? child
            : try awaitUserNamespaceLeader(child: child, pidPipe: &pidPipe, errorFD: errorFD)

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

    /// From now on SIGTERM/SIGINT to imagectl send `signal` to PID 1 of the container, once.
    func forwardTerminationSignals(as signal: Int32) {
        if pidfd >= 0 { _ = img_container_forward_signals(pidfd, signal) }
    }

    /// Sends `signal` (default SIGKILL) to PID 1 through its pidfd (never a recycled PID).
    func kill(_ signal: Int32 = SIGKILL) {
        if pidfd >= 0 { _ = img_pidfd_send_signal(pidfd, signal) }
    }

    /// Waits for PID 1 to end.
    func wait() throws -> ContainerTermination {
        let termination = try ChildStart.waitForExit(pid)
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
