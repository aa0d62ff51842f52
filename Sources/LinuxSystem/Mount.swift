import CShims
import Foundation
import Glibc
import SystemPackage

/// mount(2) flags (MS_*).
public struct MountFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    public static let readOnly = MountFlags(rawValue: UInt(Glibc.MS_RDONLY))
    public static let noSuid = MountFlags(rawValue: UInt(Glibc.MS_NOSUID))
    public static let noDev = MountFlags(rawValue: UInt(Glibc.MS_NODEV))
    public static let noExec = MountFlags(rawValue: UInt(Glibc.MS_NOEXEC))
    public static let bind = MountFlags(rawValue: UInt(Glibc.MS_BIND))
    public static let move = MountFlags(rawValue: UInt(Glibc.MS_MOVE))
    public static let recursive = MountFlags(rawValue: UInt(Glibc.MS_REC))
    public static let `private` = MountFlags(rawValue: UInt(Glibc.MS_PRIVATE))
    public static let remount = MountFlags(rawValue: UInt(Glibc.MS_REMOUNT))
}

/// One line of /proc/self/mountinfo.
public struct MountInfoEntry: Sendable, Equatable {
    public var id: Int
    public var parentID: Int
    public var mountPoint: String
    public var fstype: String
    public var source: String
    public var options: String
}

/// Mounting and unmounting: thin wrappers over mount(2), umount2(2), mount_setattr(2) and the
/// new mount API (fsopen/fsconfig/fsmount), each throwing SystemCallError naming the call.
public enum Mount {
    /// mount(2).
    public static func mount(source: String?, target: String, type: String?, flags: MountFlags = [], data: String? = nil) throws {
        try systemCall("mount", path: target) { Glibc.mount(source, target, type, flags.rawValue, data) }
    }

    /// umount2(2) with UMOUNT_NOFOLLOW (a symlink planted in an image must not redirect the
    /// unmount); `detach` adds MNT_DETACH (lazy).
    public static func unmount(_ target: String, detach: Bool = false) throws {
        var flags = Int32(UMOUNT_NOFOLLOW)
        if detach { flags |= Int32(MNT_DETACH) }
        try systemCall("umount2", path: target) { umount2(target, flags) }
    }

    /// mount_setattr(2) on `path` (recursively with `recursive`): set/clear MOUNT_ATTR_* bits and
    /// optionally change propagation (MS_PRIVATE etc.).
    public static func setAttributes(_ path: String, set: UInt64, clear: UInt64 = 0, propagation: UInt64 = 0, recursive: Bool = false) throws {
        // AT_NO_AUTOMOUNT (0x800) and AT_RECURSIVE (0x8000) are not in Debian 12's glibc headers that
        // Swift imports; values from linux/fcntl.h.
        let flags: UInt32 = 0x800 | (recursive ? 0x8000 : 0)
        try systemCall("mount_setattr", path: path) {
            img_mount_setattr(AT_FDCWD, path, flags, set, clear, propagation, 0)
        }
    }

    /// The mount table of this process (/proc/self/mountinfo).
    public static func mountInfo() -> [MountInfoEntry] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> MountInfoEntry? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 10, let id = Int(fields[0]), let parent = Int(fields[1]),
                  let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return MountInfoEntry(id: id, parentID: parent, mountPoint: unescape(fields[4]),
                                  fstype: fields[dash + 1], source: unescape(fields[dash + 2]), options: fields[5])
        }
    }

    /// Mount points at or below `directory`, deepest (and latest) first: the order to unmount in.
    public static func mounts(under directory: String) -> [MountInfoEntry] {
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        let all = mountInfo()
        let inside = all.enumerated().filter { _, entry in
            entry.mountPoint == base || entry.mountPoint.hasPrefix(base == "/" ? "/" : base + "/")
        }
        // Later lines were mounted later; deeper paths first, then newest first.
        return inside.sorted { a, b in
            let da = a.element.mountPoint.split(separator: "/").count, db = b.element.mountPoint.split(separator: "/").count
            return da != db ? da > db : a.offset > b.offset
        }.map(\.element)
    }

    /// True when `path` is a mount point of this process's namespace.
    public static func isMountPoint(_ path: String) -> Bool {
        let base = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        return mountInfo().contains { $0.mountPoint == base }
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x5C, i + 4 <= bytes.count {
                let digits = bytes[(i + 1)..<(i + 4)]
                if let value = UInt8(String(decoding: digits, as: UTF8.self), radix: 8) {
                    out.append(value)
                    i += 4
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A filesystem mounted through the new mount API and attached nowhere: fsopen(2), fsconfig(2),
/// fsmount(2). Nothing appears in any mount table, other processes cannot see or reach it, and
/// closing the descriptor (or the process dying) unmounts it: the cheapest private read-only look
/// inside an image. Paths inside are opened relative to `descriptor` (see OpenBeneath).
public final class DetachedMount: @unchecked Sendable {
    // Owns one descriptor; `close()` is idempotent and guarded by `lock`.
    private var fd: FileDescriptor?
    private let lock = NSLock()
    public let fstype: String

    /// The mount's root directory descriptor (valid until `close()`).
    public var descriptor: FileDescriptor? { lock.lock(); defer { lock.unlock() }; return fd }

    /// Mounts `source` (a block device) as `fstype` with string options (`nil` value = flag
    /// option such as "norecovery") and mount attributes (MOUNT_ATTR_RDONLY, NODEV, ...).
    public init(fstype: String, source: String, options: [(String, String?)], readOnly: Bool,
                attributes: UInt32 = UInt32(MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID)) throws {
        self.fstype = fstype
        let context = try systemCall("fsopen", path: fstype) { fsopen(fstype, UInt32(FSOPEN_CLOEXEC)) }
        defer { _ = Glibc.close(context) }
        try systemCall("fsconfig(source)", path: source) { fsconfig(context, UInt32(FSCONFIG_SET_STRING.rawValue), "source", source, 0) }
        if readOnly {
            try systemCall("fsconfig(ro)", path: source) { fsconfig(context, UInt32(FSCONFIG_SET_FLAG.rawValue), "ro", nil, 0) }
        }
        for (key, value) in options {
            if let value {
                try systemCall("fsconfig(\(key)=\(value))", path: source) { fsconfig(context, UInt32(FSCONFIG_SET_STRING.rawValue), key, value, 0) }
            } else {
                try systemCall("fsconfig(\(key))", path: source) { fsconfig(context, UInt32(FSCONFIG_SET_FLAG.rawValue), key, nil, 0) }
            }
        }
        try systemCall("fsconfig(create)", path: source) { fsconfig(context, UInt32(FSCONFIG_CMD_CREATE.rawValue), nil, nil, 0) }
        let mountAttributes = attributes | (readOnly ? UInt32(MOUNT_ATTR_RDONLY) : 0)
        let mfd = try systemCall("fsmount", path: source) { fsmount(context, UInt32(FSMOUNT_CLOEXEC), mountAttributes) }
        fd = FileDescriptor(rawValue: mfd)
    }

    deinit { try? fd?.close() }

    /// Unmounts (the mount has no other reference).
    public func close() {
        lock.lock(); defer { lock.unlock() }
        try? fd?.close()
        fd = nil
    }
}
