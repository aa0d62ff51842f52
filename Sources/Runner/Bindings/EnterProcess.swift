import CShims
import Glibc
import SystemPackage

/// The helper child of `imagectl shell` (CShimsEnter.h): started from a plan, waited for.
final class EnterProcess {
    let pid: pid_t
    /// The pty master when a console was asked for.
    let consoleMaster: FileDescriptor?

    private init(pid: pid_t, consoleMaster: FileDescriptor?) {
        self.pid = pid
        self.consoleMaster = consoleMaster
    }

    static func start(_ plan: ContainerShell.Plan, seccompProgram: [UInt8], console: Bool) throws -> EnterProcess {
        let leaderFD = img_pidfd_open(plan.record.leader, 0)
        guard leaderFD >= 0 else { throw RunnerError.noSuchMachine(plan.record.name) }
        defer { close(leaderFD) }
        var sockets: [Int32] = [-1, -1]
        if console {
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sockets) == 0 else {
                throw RunnerError.startFailed(step: "socketpair", errno: errno)
            }
        }
        defer { for fd in sockets where fd >= 0 { close(fd) } }

        let arena = ChildArena()
        var config = img_enter_config()
        config.leader_pidfd = leaderFD
        config.root_path = arena.string("/proc/\(plan.record.leader)/root")
        config.cgroup_procs = arena.stringList(plan.cgroupProcs)
        config.payload = arena.payload(PayloadDescription(
            argv: plan.argv, environment: plan.environment, workingDirectory: plan.workingDirectory,
            workingDirectoryOrRoot: true, uid: plan.uid, gid: plan.gid, groups: plan.groups,
            capabilities: plan.boundingSet, seccompProgram: seccompProgram))
        config.console_socket = sockets[1]
        var errorFD: Int32 = -1
        let pid = img_container_enter(&config, &errorFD)
        withExtendedLifetime(arena) {}  // the child has its own copy once clone returned
        guard pid > 0 else { throw RunnerError.startFailed(step: "clone", errno: errno) }
        defer { close(errorFD) }
        if sockets[1] >= 0 {
            close(sockets[1])
            sockets[1] = -1
        }

        try ChildStart.awaitExec(errorFD: errorFD, pid: pid, who: "helper")
        var master: FileDescriptor?
        if sockets[0] >= 0 {
            let fd = img_receive_fd(sockets[0])
            if fd < 0 {
                let code = errno
                _ = Glibc.kill(pid, SIGKILL)
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                throw RunnerError.startFailed(step: "receiving the pty", errno: code)
            }
            master = FileDescriptor(rawValue: fd)
        }
        // The terminal's SIGINT and SIGQUIT are for the process inside (it shares the terminal
        // when there is no pty); imagectl waits on, as system(3) does.
        signal(SIGINT, SIG_IGN)
        signal(SIGQUIT, SIG_IGN)
        return EnterProcess(pid: pid, consoleMaster: master)
    }

    /// SIGKILL to the helper; the payload follows by its parent-death signal.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
    }

    /// Waits for the helper, which exits with the payload's status (128+N for signal N).
    func wait() throws -> ContainerTermination { try ChildStart.waitForExit(pid) }
}
