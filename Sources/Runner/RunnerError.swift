import Machines

/// What can be wrong with a container request or its start.
public enum RunnerError: Swift.Error, CustomStringConvertible, Equatable {
    case unknownCapability(String)
    case invalidMachineName(String)
    case invalidHostname(String)
    case invalidUUID(String)
    case invalidEnvironment(String)
    case invalidBoolean(option: String, value: String)
    case relativePath(option: String, path: String)
    case notADirectory(String)
    case userNotFound(String)
    case noInit(String)
    case noShell(String)
    case conflictingOptions(String)
    case alreadyRunning(String)
    case startFailed(step: String, errno: Int32)
    case seccomp(String)
    /// No running machine has that name.
    case noSuchMachine(String)
    /// A value an option does not accept.
    case invalidOption(option: String, value: String)

    public var description: String {
        switch self {
        case .unknownCapability(let name): "unknown capability \"\(name)\""
        case .invalidMachineName(let name): "invalid machine name \"\(name)\" (\(MachineRecord.nameRule))"
        case .invalidHostname(let name): "invalid host name \"\(name)\""
        case .invalidUUID(let text): "invalid UUID \"\(text)\""
        case .invalidEnvironment(let text): "invalid environment assignment \"\(text)\" (expected NAME=VALUE)"
        case .invalidBoolean(let option, let value): "invalid boolean \"\(value)\" for \(option)"
        case .relativePath(let option, let path): "\(option) needs an absolute path, got \"\(path)\""
        case .notADirectory(let path): "\(path) is not a directory"
        case .userNotFound(let user): "user \"\(user)\" not found in the image's /etc/passwd"
        case .noInit(let root): "no init found in \(root) (looked for /usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init)"
        case .noShell(let root): "no shell found in \(root) (looked for the user's shell, /bin/sh)"
        case .conflictingOptions(let text): text
        case .alreadyRunning(let name): "machine \(name) is already running"
        case .startFailed(let step, let errno): "container set-up failed: \(step): \(RunnerError.errnoText(errno))"
        case .seccomp(let text): "seccomp filter: \(text)"
        case .noSuchMachine(let name): "no machine \"\(name)\" is running"
        case .invalidOption(let option, let value): "invalid value \"\(value)\" for \(option)"
        }
    }

    static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

#if canImport(Glibc)
import Glibc
#endif
