#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinuxSystem
import Machines

/// --private-users= and --private-users-ownership= (nspawn's [Exec] PrivateUsers= and [Files]
/// PrivateUsersOwnership=): whether the container gets a user namespace, which host UID/GID range
/// its 0..size-1 map to, and how the tree's owners are made to fit that range.
public struct UserNamespaceSettings: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// imagectl's default when nothing was asked for (as systemd-nspawn@.service runs every
        /// machine with -U): a picked range with the root ID-mapped, so the container's root is
        /// not the host's; a tree shifted before (by -U's chown) keeps its range. Where the tree
        /// cannot be ID-mapped, no user namespace, with a warning (never a silent chown).
        case automatic
        /// No user namespace ("no", nspawn's command-line default).
        case off
        /// "yes": the base is the owner of the root directory (masked to 64K), 65536 IDs.
        case fromRootOwner
        /// "identity": 0..65535 mapped to themselves.
        case identity
        /// "pick": a free 64K range, the root directory's own base when it is free.
        case pick
        /// "N" or "N:M".
        case fixed(base: UInt32, size: UInt32)
    }

    public enum Ownership: String, Sendable, CaseIterable, Codable {
        /// Leave the tree's owners alone (files outside the range show as nobody inside).
        case off
        /// Shift every inode's owner by the base once (lchown; the root directory records it).
        case chown
        /// An ID-mapped mount of the root (MOUNT_ATTR_IDMAP): no change on disk.
        case map
        /// map where the file system supports it, else chown; off for read-only roots.
        case auto
    }

    public var mode: Mode = .automatic
    /// nil = nspawn's default for the mode (auto for pick, off otherwise).
    public var ownership: Ownership? = nil

    public init(mode: Mode = .automatic, ownership: Ownership? = nil) {
        self.mode = mode
        self.ownership = ownership
    }

    /// The 64K block size nspawn uses for "yes" and "pick".
    public static let blockSize: UInt32 = 0x10000
    /// nspawn's range for picked bases: 0x00080000 ..< 0x6FFF0000 (inclusive upper start 0x6FFE0000).
    public static let pickRange: ClosedRange<UInt32> = 0x0008_0000...0x6FFE_0000

    /// Parses --private-users= / PrivateUsers=: a boolean word (yes/no, true/false, on/off),
    /// "pick", "identity", "N" or "N:M".
    public static func parseMode(_ text: String) throws(RunnerError) -> Mode {
        let option = "--private-users"
        // As nspawn: a number is never read as a boolean ("0" is base 0, "1" base 1).
        let isNumber = !text.isEmpty && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        switch isNumber ? "" : text.lowercased() {
        case "pick": return .pick
        case "identity": return .identity
        case "yes", "y", "true", "t", "on": return .fromRootOwner
        case "no", "n", "false", "f", "off": return .off
        default: break
        }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        func number(_ s: Substring) throws(RunnerError) -> UInt32 {
            guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = UInt32(s) else {
                throw .invalidOption(option: option, value: text)
            }
            return value
        }
        let base = try number(parts[0])
        let size = parts.count == 2 ? try number(parts[1]) : blockSize
        // nspawn's check: at least one ID, the last one below UID_INVALID (0xFFFFFFFF) and no
        // overflow of uid_t.
        guard size > 0, UInt64(base) + UInt64(size) <= 0xFFFF_FFFF else {
            throw .invalidOption(option: option, value: text)
        }
        return .fixed(base: base, size: size)
    }

    /// Parses --private-users-ownership= / PrivateUsersOwnership=.
    public static func parseOwnership(_ text: String) throws(RunnerError) -> Ownership {
        guard let value = Ownership(rawValue: text.lowercased()) else {
            throw .invalidOption(option: "--private-users-ownership", value: text)
        }
        return value
    }

    /// The ownership nspawn uses when none was given: auto for pick, off for the others.
    /// (.automatic decides for itself, see PreparedUserNamespace.decideOwnership.)
    public var effectiveOwnership: Ownership {
        if let ownership { return ownership }
        return mode == .pick || mode == .automatic ? .auto : .off
    }

    /// The mode a start uses: an ownership given alone (--private-users-ownership= without
    /// --private-users=) asks for pick with that ownership.
    var requestedMode: Mode {
        mode == .automatic && ownership != nil ? .pick : mode
    }
}

/// What goes wrong with a user namespace request.
public enum UserNamespaceError: Swift.Error, CustomStringConvertible, Equatable {
    /// Another running container holds (part of) the range.
    case rangeBusy(base: UInt32, size: UInt32)
    /// Every 64K range of nspawn's pick range is taken.
    case noFreeRange
    /// "yes": the root directory's UID and GID bases differ.
    case rootOwnerMismatch(path: String, uid: UInt32, gid: UInt32)
    /// map asked for, but the file system (or kernel) refuses ID-mapped mounts.
    case idmapUnsupported(path: String, reason: String)
    case conflicting(String)

    public var description: String {
        switch self {
        case .rangeBusy(let base, let size):
            "UID/GID range \(base):\(size) is in use by another running container"
        case .noFreeRange:
            "no free 65536-ID range left for --private-users=pick"
        case .rootOwnerMismatch(let path, let uid, let gid):
            "UID and GID base of \(path) don't match (owner \(uid):\(gid))"
        case .idmapUnsupported(let path, let reason):
            "--private-users-ownership=map: the file system of \(path) does not support ID-mapped mounts (\(reason))"
        case .conflicting(let text): text
        }
    }

    /// Exit 16 in the CLI, as for other resources held by a running machine.
    public var isBusy: Bool {
        if case .rangeBusy = self { return true }
        return false
    }
}

/// The decided user namespace of one start: range and how the tree's owners fit it.
public struct ResolvedUserNamespace: Sendable, Equatable, Codable {
    public var base: UInt32
    public var size: UInt32
    /// .off, .chown or .map (auto is decided by then).
    public var ownership: UserNamespaceSettings.Ownership
}

extension UserNamespaceSettings {
    /// nspawn's -U / pick rule for a candidate: 64K-aligned, inside the pick range.
    static func isPickable(_ base: UInt32) -> Bool {
        base % blockSize == 0 && pickRange.contains(base)
    }

    /// 64-bit FNV-1a of the machine name: the first block tried by pick, so a machine tends to get
    /// the same range on every start (its tree then needs no second chown).
    static func hashIndex(_ machine: String, count: UInt32) -> UInt32 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in machine.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return UInt32(hash % UInt64(count))
    }

    /// Candidate bases for pick in the order they are tried: the root directory's own base when
    /// it is pickable (nspawn's rule: a tree shifted before keeps its range), then every block of
    /// the pick range starting at the machine name's hash.
    static func pickCandidates(machine: String, rootOwner: (uid: UInt32, gid: UInt32)?) -> some Sequence<UInt32> {
        let first = pickRange.lowerBound / blockSize
        let count = pickRange.upperBound / blockSize - first + 1
        let start = hashIndex(machine, count: count)
        var own: UInt32? = nil
        if let rootOwner, rootOwner.uid & 0xFFFF_0000 == rootOwner.gid & 0xFFFF_0000, isPickable(rootOwner.uid & 0xFFFF_0000) {
            own = rootOwner.uid & 0xFFFF_0000
        }
        let hashed = (0..<count).lazy.map { (first + (start + $0) % count) * blockSize }.filter { $0 != own }
        return [own].compactMap { $0 } + Array(hashed)
    }

    /// True when no ID of [base, base+size) is in `taken` (the host's passwd/group IDs).
    static func isFree(base: UInt32, size: UInt32, taken: Set<UInt32>) -> Bool {
        let end = UInt64(base) + UInt64(size)
        return !taken.contains { UInt64($0) >= UInt64(base) && UInt64($0) < end }
    }

    /// The numeric IDs (third field) of passwd- or group-style text.
    static func numericIDs(_ text: String) -> Set<UInt32> {
        var ids = Set<UInt32>()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count > 2, let id = UInt32(fields[2]) { ids.insert(id) }
        }
        return ids
    }

    /// nspawn's chown shift: the low 16 bits of an ID kept, the base put above them.
    static func shifted(_ id: UInt32, base: UInt32) -> UInt32 {
        base | (id & 0xFFFF)
    }
}

/// POSIX ACL extended attribute (system.posix_acl_access / _default), as the kernel stores it:
///
///     +--------+-----------------------------+
///     | u32 LE | version (2)                 |
///     +--------+-----------------------------+  then entries, 8 bytes each:
///     | u16 LE | tag: 1 USER_OBJ, 2 USER, 4 GROUP_OBJ, 8 GROUP, 0x10 MASK, 0x20 OTHER |
///     | u16 LE | permissions                 |
///     | u32 LE | id (USER and GROUP only)    |
///     +--------+-----------------------------+
enum PosixACL {
    /// The value with the IDs of USER and GROUP entries mapped; nil when it is not a version 2
    /// ACL of whole entries.
    static func shifted(_ value: [UInt8], map: (UInt32) -> UInt32) -> [UInt8]? {
        guard value.count >= 4, (value.count - 4) % 8 == 0, readLE32(value, 0) == 2 else { return nil }
        var out = value
        var offset = 4
        while offset + 8 <= value.count {
            let tag = UInt16(value[offset]) | UInt16(value[offset + 1]) << 8
            if tag == 2 || tag == 8 { writeLE32(&out, offset + 4, map(readLE32(value, offset + 4))) }
            offset += 8
        }
        return out
    }
}

/// security.capability (struct vfs_cap_data / vfs_ns_cap_data):
///
///     +--------+------------------------------------------------------+
///     | u32 LE | magic_etc: revision 0x02000000 or 0x03000000 | flags |
///     | u32 LE | permitted (low 32)   | u32 LE | inheritable (low 32) |
///     | u32 LE | permitted (high 32)  | u32 LE | inheritable (high 32)|
///     | u32 LE | rootid (revision 3 only: the namespace root's host UID)|
///     +--------+------------------------------------------------------+
///
/// The kernel honours a file capability inside a user namespace only when its rootid is that
/// namespace's root, so a shifted tree gets revision 3 with the base as rootid.
enum FileCapability {
    static func rebased(_ value: [UInt8], rootID: UInt32) -> [UInt8]? {
        guard value.count >= 20 else { return nil }
        let magic = readLE32(value, 0)
        let revision = magic & 0xFF00_0000
        guard revision == 0x0200_0000 || revision == 0x0300_0000 else { return nil }
        var out = Array(value.prefix(20))
        writeLE32(&out, 0, 0x0300_0000 | (magic & 0x00FF_FFFF))
        out += [0, 0, 0, 0]
        writeLE32(&out, 20, rootID)
        return out
    }
}

private func readLE32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
    return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
}

private func writeLE32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
    guard offset >= 0, offset + 4 <= bytes.count else { return }
    for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
}

/// A user namespace made for one start: its fd (for the child's setns and the ID-mapped root),
/// the decided range, and the range's reservation (OFD locks under $IMAGECTL_RUNTIME_DIR/userns,
/// one per 64K block, held while the container runs; a kill -9 releases them with the process).
public final class PreparedUserNamespace {
    public let resolved: ResolvedUserNamespace
    let fd: Int32
    private var locks: [FileLock]
    /// imagectl's default namespace: host bind sources without idmap/noidmap are ID-mapped, so
    /// that a --bind behaves as it does without a user namespace (the container's root writes
    /// as the host's root there).
    let idmapBindsByDefault: Bool

    init(resolved: ResolvedUserNamespace, fd: Int32, locks: [FileLock], idmapBindsByDefault: Bool = false) {
        self.resolved = resolved
        self.fd = fd
        self.locks = locks
        self.idmapBindsByDefault = idmapBindsByDefault
    }

    /// Closes the namespace fd and releases the reservation.
    public func close() {
        UserNamespaceSystem.close(fd)
        locks.forEach { $0.releaseRemovingFile() }
        locks = []
    }

    /// The first extra mount that imagectl's default user namespace cannot carry as it is carried
    /// without one: overlay layers (an overlay's upper layer is written with the mounter's IDs,
    /// which an ID-mapped layer cannot store), and host bind sources (ID-mapped by default) on a
    /// file system that refuses ID-mapped mounts.
    static func mountsRefusingIDMap(_ mounts: [ExtraMount], namespace fd: Int32) -> String? {
        for mount in mounts {
            switch mount {
            case .overlay(_, _, _, let target):
                return "the layers of the overlay on \(target) cannot be ID-mapped"
            case .bind(let source, _, _, _):
                guard let source, !source.inRoot, source.idmap != false else { continue }
                if let code = UserNamespaceSystem.idmapRefusal(path: source.path, namespace: fd) {
                    return "the bind source \(source.path) cannot be ID-mapped (\(RunnerError.errnoText(code)))"
                }
            case .tmpfs:
                continue
            }
        }
        return nil
    }

    /// The one line printed when the default cannot give the container a user namespace.
    public static func fallbackWarning(directory: String, reason: String) -> String {
        fallbackWarning("\(directory) cannot be ID-mapped (\(reason))")
    }

    static func fallbackWarning(_ cause: String) -> String {
        "\(cause): running without a user namespace, so the container's root is the host's root"
    }

    /// The one line printed for --private-users=no (PrivateUsers=no).
    public static let noUserNamespaceWarning =
        "no user namespace (--private-users=no): the container's root is the host's root; such a container is not a security boundary"

    /// The reservation directory: `$IMAGECTL_RUNTIME_DIR/userns`, default /run/imagectl/userns.
    static var reservationDirectory: String {
        RuntimeDirectory.path + "/userns"
    }

    /// Ranges from host IDs (block 0: identity, 0:N) are not reserved: they are the host's own IDs,
    /// shared on purpose. Ranges over more than 256 blocks are not reserved either (one lock file
    /// per block).
    static func reserve(base: UInt32, size: UInt32) throws -> [FileLock]? {
        let first = base / UserNamespaceSettings.blockSize
        let last = UInt32((UInt64(base) + UInt64(size) - 1) / UInt64(UserNamespaceSettings.blockSize))
        if first == 0 || last - first >= 256 { return [] }
        let directory = reservationDirectory
        try HostFiles.makeStagingDirectory(directory)
        var locks: [FileLock] = []
        for block in first...last {
            let path = directory + "/" + String(block * UserNamespaceSettings.blockSize, radix: 16)
            guard let lock = try FileLock.tryLock(path: path, kind: .exclusive) else {
                locks.forEach { $0.releaseRemovingFile() }
                return nil
            }
            locks.append(lock)
        }
        return locks
    }

    /// Decides range and ownership for `configuration` (mode not .off), makes the namespace and
    /// shifts the tree when chown is the ownership. nil when no user namespace was asked for, or
    /// when the default (.automatic) cannot ID-map the tree: `warn` then gets one line saying so.
    public static func prepare(_ configuration: ContainerConfiguration, machine: String,
                               warn: (String) -> Void = { _ in }) throws -> PreparedUserNamespace? {
        var settings = configuration.userNamespace
        settings.mode = settings.requestedMode
        let directory = configuration.directory
        let rootOwner = UserNamespaceSystem.owner(of: directory)
        var base: UInt32
        var size: UInt32 = UserNamespaceSettings.blockSize
        var locks: [FileLock] = []
        switch settings.mode {
        case .off:
            return nil
        case .identity:
            base = 0
        case .fixed(let b, let s):
            base = b
            size = s
        case .fromRootOwner:
            guard let rootOwner else { throw RunnerError.notADirectory(directory) }
            guard rootOwner.uid & 0xFFFF_0000 == rootOwner.gid & 0xFFFF_0000 else {
                throw UserNamespaceError.rootOwnerMismatch(path: directory, uid: rootOwner.uid, gid: rootOwner.gid)
            }
            base = rootOwner.uid & 0xFFFF_0000
        case .pick, .automatic:
            let passwd = (try? readSmallTextFile("/etc/passwd")) ?? ""
            let group = (try? readSmallTextFile("/etc/group")) ?? ""
            let taken = UserNamespaceSettings.numericIDs(passwd).union(UserNamespaceSettings.numericIDs(group))
            var found: UInt32? = nil
            for candidate in UserNamespaceSettings.pickCandidates(machine: machine, rootOwner: rootOwner) {
                guard UserNamespaceSettings.isFree(base: candidate, size: size, taken: taken) else { continue }
                if let held = try reserve(base: candidate, size: size) {
                    locks = held
                    found = candidate
                    break
                }
            }
            guard let found else { throw UserNamespaceError.noFreeRange }
            base = found
        }
        if settings.mode != .pick && settings.mode != .automatic {
            guard let held = try reserve(base: base, size: size) else { throw UserNamespaceError.rangeBusy(base: base, size: size) }
            locks = held
        }
        var fd: Int32 = -1
        do {
            fd = try UserNamespaceSystem.makeNamespace(base: base, size: size)
            guard let ownership = try decideOwnership(configuration, settings: settings, fd: fd, size: size, base: base, warn: warn) else {
                UserNamespaceSystem.close(fd)
                locks.forEach { $0.releaseRemovingFile() }
                return nil
            }
            if ownership == .chown, let rootOwner, rootOwner.uid != base || rootOwner.gid != base {
                try UserNamespaceSystem.shiftOwners(root: directory, capabilityRoot: base) {
                    UserNamespaceSettings.shifted($0, base: base)
                }
            }
            return PreparedUserNamespace(resolved: ResolvedUserNamespace(base: base, size: size, ownership: ownership), fd: fd, locks: locks,
                                         idmapBindsByDefault: settings.mode == .automatic)
        } catch {
            if fd >= 0 { UserNamespaceSystem.close(fd) }
            locks.forEach { $0.releaseRemovingFile() }
            throw error
        }
    }

    /// auto: map when the root can be ID-mapped; otherwise chown, or off where chown would shift a
    /// tree that must stay as it is (read-only, -x, --volatile).
    /// The default (.automatic): chown (a no-op) for a tree shifted to `base` before, else map;
    /// nil (no user namespace, one warning) when the tree cannot be ID-mapped.
    static func decideOwnership(_ configuration: ContainerConfiguration, settings: UserNamespaceSettings, fd: Int32, size: UInt32,
                                base: UInt32, warn: (String) -> Void) throws -> UserNamespaceSettings.Ownership? {
        let directory = configuration.directory
        // --volatile=yes: a tmpfs root with the tree's /usr (ID-mapped with map); state and overlay
        // are handled like --read-only and -x.
        let volatile = configuration.mounts.volatile == .yes
        let keepTree = configuration.readOnly || configuration.ephemeral || volatile || UserNamespaceSystem.isReadOnlyMount(directory)
        // An ID-mapped mount shows on-disk IDs 0..size-1 as the container's: it needs a tree that
        // was not shifted (chowned) before; a shifted tree stays with chown (a no-op when the base
        // is the same, else a shift to the new base).
        let owner = UserNamespaceSystem.owner(of: directory)
        let shiftedBase = owner.map { $0.uid & 0xFFFF_0000 } ?? 0
        if settings.mode == .automatic {
            if let cause = mountsRefusingIDMap(configuration.mounts.orderedMounts, namespace: fd) {
                warn(Self.fallbackWarning(cause))
                return nil
            }
            if shiftedBase != 0 && shiftedBase == base { return .chown }
            if shiftedBase == 0, let code = UserNamespaceSystem.idmapRefusal(path: directory, namespace: fd) {
                warn(Self.fallbackWarning(directory: directory, reason: RunnerError.errnoText(code)))
                return nil
            }
            if shiftedBase != 0 {
                // Shifted to a range another container holds now: an ID-mapped mount would show
                // the shifted IDs, and moving the tree to a new range is -U's decision to make.
                warn(Self.fallbackWarning("the owners of \(directory) were shifted to \(shiftedBase), a range in use (-U moves them)"))
                return nil
            }
            return .map
        }
        switch settings.effectiveOwnership {
        case .off:
            return .off
        case .chown:
            if configuration.readOnly { throw UserNamespaceError.conflicting("--read-only and --private-users-ownership=chown cannot be combined") }
            if configuration.ephemeral || volatile {
                throw UserNamespaceError.conflicting("--private-users-ownership=chown would shift the original tree of --ephemeral/--volatile; use map")
            }
            if size != UserNamespaceSettings.blockSize {
                throw UserNamespaceError.conflicting("--private-users-ownership=chown needs a range of 65536 IDs (got \(size))")
            }
            return .chown
        case .map:
            if shiftedBase != 0 {
                throw UserNamespaceError.conflicting("--private-users-ownership=map needs a tree owned by IDs 0-65535, \(directory) was shifted to \(shiftedBase) (undo: --private-users=0 --private-users-ownership=chown)")
            }
            if let code = UserNamespaceSystem.idmapRefusal(path: directory, namespace: fd) {
                throw UserNamespaceError.idmapUnsupported(path: directory, reason: RunnerError.errnoText(code))
            }
            return .map
        case .auto:
            if shiftedBase == 0, UserNamespaceSystem.idmapRefusal(path: directory, namespace: fd) == nil { return .map }
            return keepTree || size != UserNamespaceSettings.blockSize ? .off : .chown
        }
    }
}
