/// How a partition found in an image is protected (what dissect saw), or how the policy lets it be
/// used. Names and meaning as in systemd.image-policy(7).
public enum PartitionProtection: String, Sendable, Codable, CaseIterable {
    /// Present, no verity and no LUKS.
    case unprotected
    /// Present with a verity hash partition (or external hash tree).
    case verity
    /// Present with verity and a root hash signature.
    case signed
    /// Present and LUKS-encrypted.
    case encrypted
    /// Present but not to be used.
    case unused
    /// Not in the image.
    case absent
}

/// systemd's image dissection policy (systemd.image-policy(7)) for the parts imagectl applies:
/// `designator=flag+flag:...`, the default rule `=flags`, the shorthands `*` (everything
/// allowed), `-` (everything may exist, nothing is used) and `~` (nothing may exist), the flags
/// unprotected / verity / signed / encrypted / unused / absent, the aliases open and ignore, and
/// the partition flags read-only-on/off and growfs-on/off.
///
/// Semantics follow systemd's image-policy.c and dissect-image.c: a designator not named gets
/// the default rule (`ignore` = unused+absent unless `=...` says otherwise); protection flags left
/// out mean all are allowed; verity and verity-sig partitions inherit from their data partition;
/// and a better-protected partition also qualifies for a weaker use (signed verity may be used
/// as plain verity or unprotected; anything present may be left unused).
public struct ImagePolicy: Sendable, Equatable, CustomStringConvertible {
    /// One bit per flag.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let verity = Flags(rawValue: 1 << 0)
        public static let signed = Flags(rawValue: 1 << 1)
        public static let encrypted = Flags(rawValue: 1 << 2)
        public static let unprotected = Flags(rawValue: 1 << 3)
        public static let unused = Flags(rawValue: 1 << 4)
        public static let absent = Flags(rawValue: 1 << 5)
        public static let readOnlyOn = Flags(rawValue: 1 << 6)
        public static let readOnlyOff = Flags(rawValue: 1 << 7)
        public static let growfsOn = Flags(rawValue: 1 << 8)
        public static let growfsOff = Flags(rawValue: 1 << 9)

        public static let open: Flags = [.verity, .signed, .encrypted, .unprotected, .unused, .absent]
        public static let ignore: Flags = [.unused, .absent]
        static let useMask: Flags = open
        static let readOnlyMask: Flags = [.readOnlyOn, .readOnlyOff]
        static let growfsMask: Flags = [.growfsOn, .growfsOff]

        static let names: [(String, Flags)] = [
            ("verity", .verity), ("signed", .signed), ("encrypted", .encrypted), ("unprotected", .unprotected),
            ("unused", .unused), ("absent", .absent), ("open", .open), ("ignore", .ignore),
            ("read-only-on", .readOnlyOn), ("read-only-off", .readOnlyOff),
            ("growfs-on", .growfsOn), ("growfs-off", .growfsOff),
        ]
    }

    /// The partition designators systemd's policy knows (architecture-independent).
    public static let designators = [
        "root", "usr", "home", "srv", "esp", "xbootldr", "swap", "root-verity", "root-verity-sig",
        "usr-verity", "usr-verity-sig", "tmp", "var",
    ]

    public private(set) var rules: [String: Flags]
    public private(set) var defaultFlags: Flags
    /// The text it was parsed from.
    public let text: String

    /// Everything allowed (what no policy means).
    public static let allowAll = ImagePolicy(rules: [:], defaultFlags: .open, text: "*")

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case missingEquals(String)
        case unknownDesignator(String)
        case duplicateDesignator(String)
        case duplicateDefault
        case unknownFlag(String, rule: String)
        case notAllowed(designator: String, found: String, allowed: String)
        case absentButRequired(designator: String, allowed: String)
        case partitionFlag(designator: String, flag: String, allowed: String)

        public var description: String {
            switch self {
            case .missingEquals(let rule):
                return "image policy: rule \"\(rule)\" has no '=' (expected designator=flags)"
            case .unknownDesignator(let name):
                return "image policy: unknown partition designator \"\(name)\" (known: \(ImagePolicy.designators.joined(separator: ", ")))"
            case .duplicateDesignator(let name):
                return "image policy: partition \"\(name)\" has more than one rule"
            case .duplicateDefault:
                return "image policy: the default rule (=flags) is given more than once"
            case .unknownFlag(let flag, let rule):
                return "image policy: unknown flag \"\(flag)\" in \"\(rule)\""
            case .notAllowed(let designator, let found, let allowed):
                return "image policy: \(designator) partition is \(found), policy allows \(allowed)"
            case .absentButRequired(let designator, let allowed):
                return "image policy: \(designator) partition is absent, policy requires it (\(allowed))"
            case .partitionFlag(let designator, let flag, let allowed):
                return "image policy: \(designator) partition is \(flag), policy allows \(allowed)"
            }
        }
    }

    private init(rules: [String: Flags], defaultFlags: Flags, text: String) {
        self.rules = rules
        self.defaultFlags = defaultFlags
        self.text = text
    }

    public var description: String { text }

    /// Parses a policy string; the error names the bad rule, designator or flag.
    public static func parse(_ text: String) throws -> ImagePolicy {
        let trimmed = text.trimmingWhitespace()
        switch trimmed {
        case "", "-": return ImagePolicy(rules: [:], defaultFlags: .ignore, text: text)
        case "*": return ImagePolicy(rules: [:], defaultFlags: .open, text: text)
        case "~": return ImagePolicy(rules: [:], defaultFlags: .absent, text: text)
        default: break
        }
        var rules: [String: Flags] = [:]
        var defaultFlags: Flags = .ignore
        var sawDefault = false
        for ruleText in trimmed.split(separator: ":", omittingEmptySubsequences: false) {
            let rule = String(ruleText)
            if rule.trimmingWhitespace().isEmpty { continue }
            guard let equals = rule.firstIndex(of: "=") else { throw Error.missingEquals(rule) }
            let name = String(rule[..<equals]).trimmingWhitespace()
            let flags = try parseFlags(String(rule[rule.index(after: equals)...]), rule: rule)
            if name.isEmpty {
                guard !sawDefault else { throw Error.duplicateDefault }
                sawDefault = true
                defaultFlags = flags
            } else {
                guard designators.contains(name) else { throw Error.unknownDesignator(name) }
                guard rules[name] == nil else { throw Error.duplicateDesignator(name) }
                rules[name] = flags
            }
        }
        return ImagePolicy(rules: rules, defaultFlags: defaultFlags, text: text)
    }

    private static func parseFlags(_ text: String, rule: String) throws -> Flags {
        let trimmed = text.trimmingWhitespace()
        if trimmed.isEmpty || trimmed == "-" { return [] }
        var flags: Flags = []
        for part in trimmed.split(separator: "+", omittingEmptySubsequences: false) {
            let word = String(part).trimmingWhitespace()
            guard let flag = Flags.names.first(where: { $0.0 == word })?.1 else { throw Error.unknownFlag(word, rule: rule) }
            flags.formUnion(flag)
        }
        return flags
    }

    /// The effective flags for a designator: its rule, else (for verity and signature partitions)
    /// a rule derived from the data partition's, else the default; unspecified parts filled in.
    public func flags(for designator: String) -> Flags {
        if let rule = rules[designator] { return Self.normalized(rule, designator: designator) }
        if let data = Self.dataDesignator(ofVerity: designator) {
            let dataFlags = flags(for: data)
            if !dataFlags.intersection([.verity, .signed]).isEmpty {
                return Self.normalized(Flags.unprotected.union(dataFlags.intersection([.unused, .absent]))
                    .union(dataFlags.intersection(Flags.readOnlyMask.union(Flags.growfsMask))), designator: designator)
            }
        }
        if let data = Self.dataDesignator(ofSignature: designator) {
            let dataFlags = flags(for: data)
            if dataFlags.contains(.signed) {
                return Self.normalized(Flags.unprotected.union(dataFlags.intersection([.unused, .absent]))
                    .union(dataFlags.intersection(Flags.readOnlyMask.union(Flags.growfsMask))), designator: designator)
            }
        }
        return Self.normalized(defaultFlags, designator: designator)
    }

    /// Checks a partition against the policy and returns how it may be used: the strongest
    /// protection that both the partition offers and the policy allows (`.unused` when it may
    /// only be left alone, `.absent` when it is absent and may be). Throws when the policy refuses
    /// the image. `readOnly`/`growfs` are the partition's GPT flags when known.
    @discardableResult
    public func check(designator: String, protection: PartitionProtection, readOnly: Bool? = nil,
                      growfs: Bool? = nil) throws -> PartitionProtection {
        let allowed = flags(for: designator)
        let allowedText = Self.describe(allowed.intersection(Flags.useMask))
        if protection == .absent {
            guard allowed.contains(.absent) else { throw Error.absentButRequired(designator: designator, allowed: allowedText) }
            return .absent
        }
        // What the partition qualifies for: anything present may go unused; signed verity is also
        // plain verity; verity may be ignored (used unprotected), as systemd's dissect does.
        let qualifies: [PartitionProtection] = switch protection {
        case .signed: [.signed, .verity, .unprotected, .unused]
        case .verity: [.verity, .unprotected, .unused]
        case .encrypted: [.encrypted, .unused]
        case .unprotected: [.unprotected, .unused]
        case .unused: [.unused]
        case .absent: [.absent]
        }
        guard let use = qualifies.first(where: { allowed.contains(Self.flag(for: $0)) }) else {
            throw Error.notAllowed(designator: designator, found: protection.rawValue, allowed: allowedText)
        }
        if use != .unused {
            if let readOnly {
                let flag: Flags = readOnly ? .readOnlyOn : .readOnlyOff
                guard allowed.contains(flag) else {
                    throw Error.partitionFlag(designator: designator, flag: readOnly ? "read-only-on" : "read-only-off",
                                              allowed: Self.describe(allowed.intersection(Flags.readOnlyMask)))
                }
            }
            if let growfs {
                let flag: Flags = growfs ? .growfsOn : .growfsOff
                guard allowed.contains(flag) else {
                    throw Error.partitionFlag(designator: designator, flag: growfs ? "growfs-on" : "growfs-off",
                                              allowed: Self.describe(allowed.intersection(Flags.growfsMask)))
                }
            }
        }
        return use
    }

    static func flag(for protection: PartitionProtection) -> Flags {
        switch protection {
        case .unprotected: .unprotected
        case .verity: .verity
        case .signed: .signed
        case .encrypted: .encrypted
        case .unused: .unused
        case .absent: .absent
        }
    }

    /// systemd's partition_policy_normalized_flags: unspecified groups mean "any"; verity
    /// partitions need no protection of their own; only root and usr have a verity concept.
    static func normalized(_ input: Flags, designator: String) -> Flags {
        var flags = input
        if flags.intersection(Flags.useMask).isEmpty { flags.formUnion(.open) }
        if flags.intersection(Flags.readOnlyMask).isEmpty { flags.formUnion(Flags.readOnlyMask) }
        if flags.intersection(Flags.growfsMask).isEmpty { flags.formUnion(Flags.growfsMask) }
        if dataDesignator(ofVerity: designator) != nil || dataDesignator(ofSignature: designator) != nil {
            flags.subtract([.verity, .signed, .encrypted])
        }
        if !["root", "usr"].contains(designator) { flags.subtract([.verity, .signed]) }
        if flags.intersection(Flags.useMask) == .absent { flags.subtract(Flags.readOnlyMask.union(Flags.growfsMask)) }
        return flags
    }

    static func dataDesignator(ofVerity designator: String) -> String? {
        switch designator {
        case "root-verity": "root"
        case "usr-verity": "usr"
        default: nil
        }
    }

    static func dataDesignator(ofSignature designator: String) -> String? {
        switch designator {
        case "root-verity-sig": "root"
        case "usr-verity-sig": "usr"
        default: nil
        }
    }

    static func describe(_ flags: Flags) -> String {
        let single = Flags.names.filter { !["open", "ignore"].contains($0.0) && flags.contains($0.1) }.map(\.0)
        return single.isEmpty ? "nothing" : single.joined(separator: "+")
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
