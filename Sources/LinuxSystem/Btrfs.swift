import CBtrfsUtil
import CShims
import Glibc
import SystemPackage

/// btrfs subvolumes, snapshots, the read-only flag and qgroup limits, through libbtrfsutil where it
/// has a call and through ioctls where it does not (qgroup limit, filesystem info).
public enum Btrfs {
    /// Whether `path` lies on a btrfs filesystem: statfs(2), `f_type == BTRFS_SUPER_MAGIC`.
    public static func isBtrfs(_ path: String) throws(SystemCallError) -> Bool {
        var buffer = statfs()
        try systemCall("statfs", path: path) { statfs(path, &buffer) }
        return Int(buffer.f_type) == img_BTRFS_SUPER_MAGIC
    }

    /// Whether `path` is the root of a subvolume: libbtrfsutil `btrfs_util_is_subvolume` (a
    /// directory with inode 256 on btrfs). False when not on btrfs.
    public static func isSubvolume(_ path: String) throws(SystemCallError) -> Bool {
        let result = btrfs_util_is_subvolume(path)
        switch result {
        case BTRFS_UTIL_OK: return true
        case BTRFS_UTIL_ERROR_NOT_BTRFS, BTRFS_UTIL_ERROR_NOT_SUBVOLUME: return false
        default: throw error(result, "btrfs_util_is_subvolume", path)
        }
    }

    /// Creates an empty subvolume at `path` (mode 0755, as mkdir would): libbtrfsutil
    /// `btrfs_util_create_subvolume` (ioctl `BTRFS_IOC_SUBVOL_CREATE`).
    public static func createSubvolume(_ path: String) throws(SystemCallError) {
        let result = btrfs_util_create_subvolume(path, 0, nil, nil)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_create_subvolume", path) }
    }

    /// Deletes the subvolume at `path`; with `recursive`, the subvolumes beneath it first:
    /// libbtrfsutil `btrfs_util_delete_subvolume` (ioctl `BTRFS_IOC_SNAP_DESTROY`). Read-only flags on
    /// the subvolume and those beneath it are cleared first, because a child cannot be unlinked
    /// from a read-only parent.
    public static func deleteSubvolume(_ path: String, recursive: Bool = true) throws(SystemCallError) {
        if recursive {
            // Parents before children: a child's ro flag can be cleared whatever the parent's.
            if try isReadOnly(path) { try setReadOnly(path, false) }
            for child in try subvolumes(beneath: path, postOrder: false) where try isReadOnly(child) {
                try setReadOnly(child, false)
            }
        } else if try isReadOnly(path) {
            try setReadOnly(path, false)
        }
        let flags = recursive ? Int32(BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE) : 0
        let result = btrfs_util_delete_subvolume(path, flags)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_delete_subvolume", path) }
    }

    /// Snapshots subvolume `source` to `destination` (which must not exist): libbtrfsutil
    /// `btrfs_util_create_snapshot` (ioctl `BTRFS_IOC_SNAP_CREATE_V2`). `recursive` also snapshots
    /// the subvolumes beneath `source` into the same places. libbtrfsutil cannot combine recursive
    /// with read-only (it has to create the children inside the new snapshot), so a read-only
    /// recursive snapshot is made writable and then flagged read-only, children first.
    public static func snapshot(_ source: String, to destination: String, recursive: Bool = true, readOnly: Bool = false) throws(SystemCallError) {
        var flags: Int32 = 0
        if recursive { flags |= Int32(BTRFS_UTIL_CREATE_SNAPSHOT_RECURSIVE) }
        if readOnly && !recursive { flags |= Int32(BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY) }
        let result = btrfs_util_create_snapshot(source, destination, flags, nil, nil)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_create_snapshot", "\(source) -> \(destination)") }
        if readOnly && recursive {
            for child in try subvolumes(beneath: destination, postOrder: true) {
                try setReadOnly(child, true)
            }
            try setReadOnly(destination, true)
        }
    }

    /// The paths of the subvolumes beneath the subvolume at `path` (not including it):
    /// libbtrfsutil subvolume iterator (`BTRFS_IOC_TREE_SEARCH`/`BTRFS_IOC_GET_SUBVOL_ROOTREF`).
    /// `postOrder` lists children before their parents.
    public static func subvolumes(beneath path: String, postOrder: Bool) throws(SystemCallError) -> [String] {
        var iterator: OpaquePointer?
        let flags = postOrder ? Int32(BTRFS_UTIL_SUBVOLUME_ITERATOR_POST_ORDER) : 0
        let created = btrfs_util_create_subvolume_iterator(path, 0, flags, &iterator)
        guard created == BTRFS_UTIL_OK, let iterator else {
            throw error(created, "btrfs_util_create_subvolume_iterator", path)
        }
        defer { btrfs_util_destroy_subvolume_iterator(iterator) }
        var result: [String] = []
        while true {
            var relative: UnsafeMutablePointer<CChar>?
            var id: UInt64 = 0
            let step = btrfs_util_subvolume_iterator_next(iterator, &relative, &id)
            if step == BTRFS_UTIL_ERROR_STOP_ITERATION { break }
            guard step == BTRFS_UTIL_OK, let relative else {
                throw error(step, "btrfs_util_subvolume_iterator_next", path)
            }
            result.append(path + "/" + String(cString: relative))
            free(relative)
        }
        return result
    }

    /// The read-only flag of the subvolume at `path`: libbtrfsutil
    /// `btrfs_util_get_subvolume_read_only` (ioctl `BTRFS_IOC_SUBVOL_GETFLAGS`).
    public static func isReadOnly(_ path: String) throws(SystemCallError) -> Bool {
        var value = false
        let result = btrfs_util_get_subvolume_read_only(path, &value)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_get_subvolume_read_only", path) }
        return value
    }

    /// Sets or clears the read-only flag: libbtrfsutil `btrfs_util_set_subvolume_read_only`
    /// (ioctl `BTRFS_IOC_SUBVOL_SETFLAGS`).
    public static func setReadOnly(_ path: String, _ readOnly: Bool) throws(SystemCallError) {
        let result = btrfs_util_set_subvolume_read_only(path, readOnly)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_set_subvolume_read_only", path) }
    }

    /// The id of the subvolume containing `path`: libbtrfsutil `btrfs_util_subvolume_id`
    /// (ioctl `BTRFS_IOC_INO_LOOKUP`).
    public static func subvolumeID(_ path: String) throws(SystemCallError) -> UInt64 {
        var id: UInt64 = 0
        let result = btrfs_util_subvolume_id(path, &id)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_subvolume_id", path) }
        return id
    }

    /// The creation time (otime) of the subvolume at `path`: libbtrfsutil
    /// `btrfs_util_subvolume_info`. Returns seconds and nanoseconds since the epoch.
    public static func creationTime(_ path: String) throws(SystemCallError) -> (seconds: Int64, nanoseconds: Int) {
        var info = btrfs_util_subvolume_info()
        let result = btrfs_util_subvolume_info(path, 0, &info)
        guard result == BTRFS_UTIL_OK else { throw error(result, "btrfs_util_subvolume_info", path) }
        return (Int64(info.otime.tv_sec), Int(info.otime.tv_nsec))
    }

    /// The filesystem UUID (as in /sys/fs/btrfs/<uuid>) of the btrfs holding `path`:
    /// ioctl(2) `BTRFS_IOC_FS_INFO`.
    public static func filesystemUUID(_ path: String) throws(SystemCallError) -> String {
        let fd = try systemCall("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY) }
        defer { Glibc.close(fd) }
        var args = btrfs_ioctl_fs_info_args()
        try systemCall("ioctl(BTRFS_IOC_FS_INFO)", path: path) { ioctl(fd, img_BTRFS_IOC_FS_INFO, &args) }
        let bytes = withUnsafeBytes(of: args.fsid) { Array($0.prefix(16)) }
        let hex = bytes.map { byte -> String in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        // 8-4-4-4-12, as the kernel spells it in sysfs.
        let cut = [8, 12, 16, 20]
        var uuid = ""
        for (index, character) in hex.enumerated() {
            if cut.contains(index) { uuid.append("-") }
            uuid.append(character)
        }
        return uuid
    }

    /// Whether quota (qgroups) is enabled on the btrfs holding `path`: the kernel lists
    /// /sys/fs/btrfs/<uuid>/qgroups only while quota is on.
    public static func isQuotaEnabled(_ path: String) throws(SystemCallError) -> Bool {
        let uuid = try filesystemUUID(path)
        var info = stat()
        return stat("/sys/fs/btrfs/\(uuid)/qgroups", &info) == 0
    }

    /// The referenced-bytes limit of the subvolume at `path`, or nil when there is none (or quota
    /// is off): read from /sys/fs/btrfs/<uuid>/qgroups/0_<id>/max_referenced.
    public static func referencedLimit(_ path: String) throws(SystemCallError) -> UInt64? {
        let uuid = try filesystemUUID(path)
        let id = try subvolumeID(path)
        guard let text = try? readSmallTextFile("/sys/fs/btrfs/\(uuid)/qgroups/0_\(id)/max_referenced"),
              let value = UInt64(text.trimmingWhitespace()), value != 0, value != UInt64.max else { return nil }
        return value
    }

    /// Sets (or with nil removes) the limit on referenced bytes of the subvolume at `path`'s level-0
    /// qgroup: ioctl(2) `BTRFS_IOC_QGROUP_LIMIT` (qgroupid 0 = the subvolume of the descriptor).
    /// Quota must already be on: the kernel answers ENOTCONN otherwise, and this never turns quota
    /// on (that is `btrfs quota enable`, a whole-filesystem decision with a cost).
    public static func setReferencedLimit(_ path: String, bytes: UInt64?) throws(SystemCallError) {
        let fd = try systemCall("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY) }
        defer { Glibc.close(fd) }
        var args = btrfs_ioctl_qgroup_limit_args()
        args.qgroupid = 0
        args.lim.flags = UInt64(BTRFS_QGROUP_LIMIT_MAX_RFER)
        // btrfs-progs writes (u64)-1 to clear a limit ("btrfs qgroup limit none").
        args.lim.max_rfer = bytes ?? UInt64.max
        try systemCall("ioctl(BTRFS_IOC_QGROUP_LIMIT)", path: path) { ioctl(fd, img_BTRFS_IOC_QGROUP_LIMIT, &args) }
    }

    /// libbtrfsutil sets errno alongside its own code; the call name carries the library's text
    /// when errno is 0 (e.g. "not a subvolume").
    private static func error(_ code: btrfs_util_error, _ call: String, _ path: String) -> SystemCallError {
        let saved = img_errno()
        if saved != 0 { return SystemCallError(call, errno: Errno(rawValue: saved), path: path) }
        let text = btrfs_util_strerror(code).map { String(cString: $0) } ?? "error \(code.rawValue)"
        return SystemCallError("\(call) (\(text))", errno: .invalidArgument, path: path)
    }
}

extension String {
    /// Drops leading and trailing spaces, tabs and newlines (no Foundation in LinuxSystem).
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
