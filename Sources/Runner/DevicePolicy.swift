import Glibc

/// Which device nodes a container may create (mknod) and open for reading or writing: an allow
/// list, everything else denied, in the kernel's devices cgroup model. systemd-nspawn gets the
/// same from systemd (DevicePolicy=closed and a DeviceAllow= list); imagectl enforces it itself,
/// as a cgroup v1 devices list and/or a cgroup v2 device BPF program (CgroupTree).
public struct DevicePolicy: Equatable, Sendable {
    public enum Kind: Sendable, Equatable {
        case char, block
    }

    /// Access bits with the kernel's values (DEVCG_ACC_*), which the BPF program compares.
    public struct Access: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let mknod = Access(rawValue: 1)
        public static let read = Access(rawValue: 2)
        public static let write = Access(rawValue: 4)
        public static let readWrite: Access = [.read, .write]
        public static let all: Access = [.read, .write, .mknod]
    }

    public struct Rule: Equatable, Sendable {
        public var kind: Kind
        /// nil: any.
        public var major: UInt32?
        public var minor: UInt32?
        public var access: Access

        public init(_ kind: Kind, _ major: UInt32?, _ minor: UInt32?, _ access: Access) {
            self.kind = kind
            self.major = major
            self.minor = minor
            self.access = access
        }

        /// The cgroup v1 devices.allow line, e.g. "c 1:3 rwm", "c 136:* rw".
        public var devicesListLine: String {
            let type = kind == .char ? "c" : "b"
            let number = { (n: UInt32?) in n.map(String.init) ?? "*" }
            var letters = ""
            if access.contains(.read) { letters += "r" }
            if access.contains(.write) { letters += "w" }
            if access.contains(.mknod) { letters += "m" }
            return "\(type) \(number(major)):\(number(minor)) \(letters)"
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule]) { self.rules = rules }

    /// nspawn's list (nspawn-register.c): the nodes imagectl makes in the container's /dev, the
    /// TUN device, the container's own ptys through its ptmx. /dev/console is a bind of a pty.
    public static let nspawnDefault = DevicePolicy(rules: [
        Rule(.char, 1, 3, .all),  // /dev/null
        Rule(.char, 1, 5, .all),  // /dev/zero
        Rule(.char, 1, 7, .all),  // /dev/full
        Rule(.char, 1, 8, .all),  // /dev/random
        Rule(.char, 1, 9, .all),  // /dev/urandom
        Rule(.char, 5, 0, .all),  // /dev/tty
        Rule(.char, 10, 200, .all),  // /dev/net/tun
        Rule(.char, 5, 2, .readWrite),  // /dev/pts/ptmx
        Rule(.char, 136, nil, .readWrite),  // char-pts: the ptys of the devpts instance
    ])

    /// The device numbers of a host path when it is a device node: (kind, major, minor).
    public typealias DeviceLookup = (String) -> (kind: Kind, major: UInt32, minor: UInt32)?

    /// The list for a container: `self` plus, as nspawn's register code adds DeviceAllow= for
    /// device binds, each --bind= of a host device node with rw (r when bound read-only). Binds
    /// whose source is inside the container (+PATH) add nothing: the image must not choose which
    /// host device it may open.
    public func allowingBoundDevices(_ mounts: [ExtraMount], lookup: DeviceLookup = DevicePolicy.hostDevice) -> DevicePolicy {
        var policy = self
        for case .bind(let source?, _, let readOnly, _) in mounts where !source.inRoot {
            guard let device = lookup(source.path) else { continue }
            let rule = Rule(device.kind, device.major, device.minor, readOnly ? .read : .readWrite)
            if !policy.allows(rule.kind, device.major, device.minor, rule.access) { policy.rules.append(rule) }
        }
        return policy
    }

    /// stat(2) of `path` (following links, as the bind mount does); nil unless a device node.
    public static func hostDevice(_ path: String) -> (kind: Kind, major: UInt32, minor: UInt32)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let kind: Kind
        switch st.st_mode & S_IFMT {
        case S_IFCHR: kind = .char
        case S_IFBLK: kind = .block
        default: return nil
        }
        return (kind, majorNumber(UInt64(st.st_rdev)), minorNumber(UInt64(st.st_rdev)))
    }

    /// glibc's major()/minor() (macros Swift does not import) for a dev_t.
    static func majorNumber(_ device: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((device >> 8) & 0xFFF) | ((device >> 32) & ~UInt64(0xFFF)))
    }

    static func minorNumber(_ device: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: (device & 0xFF) | ((device >> 12) & ~UInt64(0xFF)))
    }

    /// Whether the list allows `access` to a device: some rule matches its kind and numbers and
    /// covers every requested bit (the kernel's semantics for both renderings).
    public func allows(_ kind: Kind, _ major: UInt32, _ minor: UInt32, _ access: Access) -> Bool {
        rules.contains { rule in
            rule.kind == kind && (rule.major ?? major) == major && (rule.minor ?? minor) == minor
                && rule.access.isSuperset(of: access)
        }
    }

    /// The cgroup v1 rendering: written one line at a time to devices.allow after "a" was written
    /// to devices.deny.
    public var devicesListLines: [String] { rules.map(\.devicesListLine) }
}
