#if canImport(Glibc)
import Glibc
#endif

/// What can go wrong registering, finding or signalling a running machine, or relaying its
/// console.
public enum MachineError: Swift.Error, CustomStringConvertible, Equatable {
    case invalidMachineName(String)
    /// A live machine holds that name already (the CLI exits 16, busy).
    case alreadyRunning(String)
    /// No running machine has that name.
    case noSuchMachine(String)
    /// The machine registry could not be read or written.
    case registry(String)
    case unknownSignal(String)
    /// A system call of the console relay failed.
    case console(call: String, errno: Int32)
    /// Talking to a VM's qemu over QMP failed.
    case qmp(String)
    /// The machine cannot do what was asked (a reboot of a machine whose record lacks the
    /// signal, a login into a VM).
    case unsupported(String)

    public var description: String {
        switch self {
        case .invalidMachineName(let name): "invalid machine name \"\(name)\" (\(MachineRecord.nameRule))"
        case .alreadyRunning(let name): "machine \(name) is already running"
        case .noSuchMachine(let name): "no machine \"\(name)\" is running"
        case .registry(let text): "machine registry: \(text)"
        case .unknownSignal(let name): "unknown signal \"\(name)\""
        case .console(let call, let errno): "console relay: \(call): \(Self.errnoText(errno))"
        case .qmp(let text): "QMP: \(text)"
        case .unsupported(let text): text
        }
    }

    /// True for `alreadyRunning`: the CLI exits 16, as for a locked image.
    public var isBusy: Bool {
        if case .alreadyRunning = self { return true }
        return false
    }

    package static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}
