import CShims
import Glibc

/// A machine's leader held by a pidfd (pidfd_open(2)), so that a signal reaches that process
/// and never one that took its PID after it ended (pidfd_send_signal(2)).
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
}
