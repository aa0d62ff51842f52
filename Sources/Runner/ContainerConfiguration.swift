import Dissect
import Foundation
import Network
import Machines

/// Everything `imagectl run` was asked for, as values (validated by `validate()`).
public struct ContainerConfiguration: Sendable {
    /// The container's tree on the host (-D).
    public var directory: String
    /// Payload and arguments; empty: a login shell (or, with `boot`, no extra init arguments).
    public var command: [String] = []
    /// Start the image's init (-b); `command` becomes its arguments.
    public var boot = false
    /// A stub init is PID 1 and the payload PID 2 (-a).
    public var asPID2 = false
    /// Throw-away overlay over `directory` (-x).
    public var ephemeral = false
    /// With -x and no name chosen by -M: the machine is NAME-<16 random hex digits> (nspawn's
    /// rule), so ephemeral machines of one tree or pool image run side by side.
    public var uniqueEphemeralName = false
    public var readOnly = false
    /// Machine name (-M); default: from the directory's name.
    public var machineName: String?
    /// Host name; default: the machine name.
    public var hostname: String?
    public var uuid: UUID?
    /// Working directory inside (--chdir); default: the user's home, or "/" with -b.
    public var workingDirectory: String?
    /// User inside (-u), a name from the image's /etc/passwd or a number.
    public var user: String?
    /// Extra environment (-E NAME=VALUE), applied last.
    public var environment: [String] = []
    /// Signal sent once on SIGTERM/SIGINT; default SIGKILL, or SIGRTMIN+3 with -b.
    public var killSignal: Int32?
    public var addCapabilities: Set<Capability> = []
    public var dropCapabilities: Set<Capability> = []
    public var noNewPrivileges = false
    public var privateNetwork = false
    /// -n, --network-*, -p and the .nspawn [Network] links and ports; any of them needs
    /// `privateNetwork` (the CLI sets it, as nspawn's options imply --private-network).
    public var network = NetworkSettings()
    /// The default seccomp filter (off only for tests that compare).
    public var seccomp = true
    /// --system-call-filter= values: calls and groups added to (or, with "~", taken from) nspawn's
    /// default allow list (see SystemCallFilter).
    public var systemCallFilter = SystemCallFilterSettings()

    // --- root sources and extra mounts ---
    /// -i, -M as a source, verity and policy, --bind/--tmpfs/--overlay (see MountSettings).
    public var mounts = MountSettings()
    /// What ImageAdmission decided about a disk image's verity, for the machine record.
    public var verityTrust: [VerityTrust] = []

    // --- process, console, limits ---
    public var process = ProcessSettings()

    // --- /etc/resolv.conf and /etc/localtime (see EtcFiles for nspawn's rules) ---
    public var resolvConf: ResolvConfMode = .auto
    public var timezone: TimezoneMode = .auto

    // --- readiness (sd_notify) ---
    /// --notify-ready=: false (default): imagectl reports READY=1 to its own service manager as
    /// soon as the payload started; true: only once the payload sent READY=1 on the container's
    /// notification socket (/run/host/notify, $NOTIFY_SOCKET inside).
    public var notifyReady = false

    // --- user namespace: --private-users=, --private-users-ownership= ---
    public var userNamespace = UserNamespaceSettings()

    public init(directory: String) { self.directory = directory }

    /// Machine names are host names in one label, as nspawn requires (the registry's rule).
    public static func isValidMachineName(_ name: String) -> Bool {
        MachineRecord.isValidName(name)
    }

    /// The machine name: -M, or the directory's last component made valid (characters a machine
    /// name cannot hold are dropped).
    public var resolvedMachineName: String {
        get throws(RunnerError) {
            if let machineName {
                guard Self.isValidMachineName(machineName) else { throw .invalidMachineName(machineName) }
                return machineName
            }
            let base = URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent
            guard let name = MachineRecord.name(derivedFrom: base) else { throw .invalidMachineName(base) }
            return name
        }
    }

    /// Checks option combinations and values that need no file system access.
    public func validate() throws(RunnerError) {
        _ = try resolvedMachineName
        if let hostname, !Self.isValidHostname(hostname) { throw .invalidHostname(hostname) }
        if let workingDirectory, !workingDirectory.hasPrefix("/") { throw .relativePath(option: "--chdir", path: workingDirectory) }
        for assignment in environment {
            guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex,
                  !assignment[..<eq].contains(where: { $0 == "\0" }) else { throw .invalidEnvironment(assignment) }
        }
        if boot && asPID2 { throw .conflictingOptions("--boot and --as-pid2 cannot be combined") }
        if boot && user != nil { throw .conflictingOptions("--user cannot be combined with --boot") }
    }

    static func isValidHostname(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 64, !name.hasPrefix("."), !name.hasSuffix("."), !name.contains("..") else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f || c == 0x2e
        }
    }

    /// The bounding set the payload keeps: nspawn's default, plus CAP_NET_ADMIN with a private
    /// network, plus --capability=, minus --drop-capability=.
    public var boundingSet: Set<Capability> {
        var set = Capability.nspawnDefault
        if privateNetwork { set.insert(Capability.netAdmin) }
        set.formUnion(addCapabilities)
        set.subtract(dropCapabilities)
        return set
    }

    /// Parses systemd-style booleans (yes/no, true/false, on/off, 1/0).
    public static func parseBoolean(_ text: String, option: String) throws(RunnerError) -> Bool {
        switch text.lowercased() {
        case "1", "yes", "y", "true", "t", "on": return true
        case "0", "no", "n", "false", "f", "off": return false
        default: throw .invalidBoolean(option: option, value: text)
        }
    }
}
