#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// --private-users= and --private-users-ownership= (nspawn's [Exec] PrivateUsers= and [Files]
/// PrivateUsersOwnership=): whether the container gets a user namespace, which host UID/GID range
/// its 0..size-1 map to, and how the tree's owners are made to fit that range.
public struct UserNamespaceSettings: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// No user namespace (nspawn's default, "no").
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

    public enum Ownership: String, Sendable, CaseIterable {
        /// Leave the tree's owners alone (files outside the range show as nobody inside).
        case off
        /// Shift every inode's owner by the base once (lchown; the root directory records it).
        case chown
        /// An ID-mapped mount of the root (MOUNT_ATTR_IDMAP): no change on disk.
        case map
        /// map where the file system supports it, else chown; off for read-only roots.
        case auto
    }

    public var mode: Mode = .off
    /// nil = nspawn's default for the mode (auto for pick, off otherwise).
    public var ownership: Ownership? = nil

    public init(mode: Mode = .off, ownership: Ownership? = nil) {
        self.mode = mode
        self.ownership = ownership
    }

    /// The 64K block size nspawn uses for "yes" and "pick".
    public static let blockSize: UInt32 = 0x10000
    /// nspawn's range for picked bases: 0x00080000 ..< 0x6FFF0000 (inclusive upper start 0x6FFE0000).
    public static let pickRange: ClosedRange<UInt32> = 0x0008_0000...0x6FFE_0000

    /// Parses --private-users= / PrivateUsers=: a boolean, "pick", "identity", "N" or "N:M".
    public static func parseMode(_ text: String) throws(RunnerError) -> Mode {
        let option = "--private-users"
        switch text.lowercased() {
        case "pick": return .pick
        case "identity": return .identity
        case "1", "yes", "y", "true", "t", "on": return .fromRootOwner
        case "0", "no", "n", "false", "f", "off": return .off
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
    public var effectiveOwnership: Ownership {
        if let ownership { return ownership }
        return mode == .pick ? .auto : .off
    }
}
