import Foundation

/// One running machine (a container of `imagectl run` or a VM of `imagectl vm`), as its
/// supervisor registered it: what every kind of machine has. A runner that keeps more about its
/// machines registers its own `RegistryEntry` whose JSON holds these fields and its own.
public struct MachineRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case container, vm }
    /// Machine name, unique among running machines.
    public var name: String
    public var kind: Kind
    /// Host PID of the container's PID 1, or of the qemu process.
    public var leader: Int32
    /// PID of the imagectl process that runs the machine.
    public var supervisor: Int32
    /// Directory or image path shown by `imagectl machines`.
    public var root: String?
    public var uuid: UUID?
    public var started: Date
    /// What `imagectl stop` and `poweroff` send to a container's `leader`: its init's power-off
    /// signal (SIGRTMIN+4 for systemd, SIGUSR2 for busybox, ...), or the kill signal of a
    /// plain payload; for a vm SIGTERM (qemu's own clean exit, used only without `qmpSocket`).
    public var stopSignal: Int32
    /// The machine's addresses on its network links (-n, --network-zone=, a VM's tap), as
    /// machinectl list shows them; nil without networking or when the machine's own DHCP client
    /// gets them from elsewhere (a bridge).
    public var addresses: [String]? = nil
    /// What `imagectl reboot` sends to a container's leader (SIGINT for systemd, SIGTERM for
    /// busybox, the kill signal of a plain payload). nil in records of an imagectl that did not
    /// keep it, and for a vm (rebooted through QMP).
    public var rebootSignal: Int32? = nil
    /// The init the container runs (decides the signals above); nil for a vm and in older
    /// records.
    public var initSystem: InitSystem? = nil
    /// A vm's QMP socket (qemu's control socket): poweroff, reboot, stop and terminate go
    /// through it. nil for a container and in older records.
    public var qmpSocket: String? = nil

    public init(name: String, kind: Kind, leader: Int32, supervisor: Int32, root: String?, uuid: UUID?,
                started: Date, stopSignal: Int32) {
        self.name = name
        self.kind = kind
        self.leader = leader
        self.supervisor = supervisor
        self.root = root
        self.uuid = uuid
        self.started = started
        self.stopSignal = stopSignal
    }

    /// The machine-name rule of containers, VMs and new pool images alike (systemd's
    /// `hostname_is_valid`, which nspawn and importd apply): a host name of labels made of
    /// letters, digits, "-" and "_", joined by single dots (none first or last); at most 64
    /// bytes; not "-" first (it would read as an option). It names the registry file, and the
    /// store applies it to every image it creates, so that any pool image can be run by name.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 64, !name.hasPrefix("-") else { return false }
        var previous: UInt8 = 0x2e  // a dot "before" the name: it cannot start with one
        for c in name.utf8 {
            let ldh = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f
            if c == 0x2e {
                if previous == 0x2e { return false }  // leading dot or ".."
            } else if !ldh {
                return false
            }
            previous = c
        }
        return previous != 0x2e
    }

    /// The rule above in words, for error messages.
    public static let nameRule = "a host name: letters, digits, \"-\" and \"_\", labels joined by single dots, not \"-\" or \".\" first; at most 64 characters"

    /// A valid machine name made from `text` (a directory or file name): characters a machine
    /// name cannot hold are dropped, dots collapsed and trimmed, at most 64 bytes; nil when
    /// nothing is left.
    public static func name(derivedFrom text: String) -> String? {
        var result = ""
        for scalar in text.unicodeScalars where scalar.isASCII {
            let c = Character(scalar)
            guard c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." else { continue }
            if c == "." && (result.isEmpty || result.hasSuffix(".")) { continue }
            if c == "-" && result.isEmpty { continue }
            result.append(c)
        }
        result = String(result.prefix(64))
        while result.hasSuffix(".") { result.removeLast() }
        return isValidName(result) ? result : nil
    }
}

/// What a runner writes to the registry for one machine: the common `MachineRecord` and, in the
/// same JSON object, whatever else that runner needs back later (the container runner keeps
/// what `imagectl shell` needs to enter a container the same way).
public protocol RegistryEntry: Codable, Sendable {
    var machine: MachineRecord { get }
}

extension MachineRecord: RegistryEntry {
    public var machine: MachineRecord { self }
}
