import Glibc

/// Whether a host PID names a live process: kill(2) with signal 0 (EPERM: alive, not ours).
enum ProcessLiveness {
    static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }
}
