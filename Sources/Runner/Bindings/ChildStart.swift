import CShims
import Glibc
import LinuxSystem

/// The start-up protocol of the two clone()d children (container.c's container child and
/// enter.c's `imagectl shell` helper): their error pipe reaches EOF when the payload was exec'd,
/// or carries one `img_container_error` naming the failed step first.
enum ChildStart {
    /// Reads the child's error pipe; on a report, reaps the child and throws the step it names.
    /// `who` says whose report was cut short ("child", "helper").
    static func awaitExec(errorFD: Int32, pid: pid_t, who: String) throws {
        guard let report = ChildErrorReport.read(from: errorFD) else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        throw RunnerError.startFailed(step: report.complete ? report.step : "the \(who)'s report was cut short", errno: report.errorNumber)
    }

    /// waitpid(2) until `pid` ends, as an exit code or a terminating signal.
    static func waitForExit(_ pid: pid_t) throws -> ContainerTermination {
        var status: Int32 = 0
        while true {
            if waitpid(pid, &status, 0) >= 0 { break }
            if errno != EINTR { throw RunnerError.startFailed(step: "waitpid", errno: errno) }
        }
        if img_wifexited(status) != 0 { return .exited(img_wexitstatus(status)) }
        return .signaled(img_wtermsig(status))
    }
}

/// What runs in the end, for `run` and `shell` alike (`struct img_payload`): the command, its
/// environment and identity, and what it may do.
struct PayloadDescription: Equatable {
    var argv: [String]
    var environment: [String]
    /// Resolved beneath the container's root.
    var workingDirectory: String
    /// When the working directory cannot be entered, "/" is (a shell in a home that is gone).
    var workingDirectoryOrRoot = false
    var uid: UInt32
    var gid: UInt32
    var groups: [UInt32]
    /// Capabilities kept in the bounding set (bit N = capability N).
    var capabilities: UInt64
    var noNewPrivileges = false
    /// Classic BPF programs (SeccompFilter.program); empty: none.
    var seccompProgram: [UInt8] = []
}
