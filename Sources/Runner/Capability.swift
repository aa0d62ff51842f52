/// Linux capabilities by name (capabilities(7)), and the bounding set a container keeps.
public struct Capability: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The capability number (CAP_CHOWN is 0).
    public let number: Int

    public static func < (a: Capability, b: Capability) -> Bool { a.number < b.number }

    /// Names as in linux/capability.h, without the CAP_ prefix, indexed by number.
    static let names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ]

    public var description: String { "CAP_" + Self.names[number] }

    /// Parses "CAP_SYS_ADMIN" or "sys_admin" (case-insensitive, prefix optional).
    public init?(name: String) {
        var upper = name.uppercased()
        if upper.hasPrefix("CAP_") { upper.removeFirst(4) }
        guard let index = Self.names.firstIndex(of: upper) else { return nil }
        number = index
    }

    init(_ number: Int) { self.number = number }

    public static let all: Set<Capability> = Set(names.indices.map(Capability.init))

    /// systemd-nspawn's default bounding set (systemd-nspawn(1), --capability=).
    public static let nspawnDefault: Set<Capability> = Set([
        "AUDIT_CONTROL", "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID",
        "IPC_OWNER", "KILL", "LEASE", "LINUX_IMMUTABLE", "MKNOD", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
        "SYS_NICE", "SYS_PTRACE", "SYS_RESOURCE", "SYS_TTY_CONFIG",
    ].compactMap { Capability(name: $0) })

    public static let netAdmin = Capability(12)

    /// Parses a comma-separated list as --capability= takes it; "all" names every capability.
    public static func parseList(_ text: String) throws(RunnerError) -> Set<Capability> {
        var result: Set<Capability> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let name = item.trimmingCharacters(in: " ")
            if name.lowercased() == "all" { result.formUnion(all); continue }
            guard let capability = Capability(name: name) else { throw .unknownCapability(name) }
            result.insert(capability)
        }
        return result
    }

    /// The set as a bit mask (bit N = capability N).
    static func mask(_ set: Set<Capability>) -> UInt64 {
        set.reduce(0) { $0 | (1 << UInt64($1.number)) }
    }
}

private extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
