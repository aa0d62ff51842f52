import CShims
import Glibc
import SystemPackage

/// Inode flags (what chattr(1) sets), through the `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` ioctls.
/// The store marks a read-only directory image immutable (`chattr +i`), as machinectl does.
public enum InodeFlags {
    /// FS_IMMUTABLE_FL: no change to the inode, no rename, no unlink, no new links.
    public static let immutable = UInt32(bitPattern: img_FS_IMMUTABLE_FL)

    /// The flags of `path` (opened read-only, O_NOFOLLOW): ioctl(2) `FS_IOC_GETFLAGS`.
    public static func get(_ path: String) throws(SystemCallError) -> UInt32 {
        let fd = try openForFlags(path)
        defer { Glibc.close(fd) }
        return try get(fd: fd, path: path)
    }

    /// ioctl(2) `FS_IOC_GETFLAGS` on an open descriptor. (The kernel reads and writes an int.)
    public static func get(fd: Int32, path: String? = nil) throws(SystemCallError) -> UInt32 {
        var flags: Int32 = 0
        try systemCall("ioctl(FS_IOC_GETFLAGS)", path: path) { ioctl(fd, img_FS_IOC_GETFLAGS, &flags) }
        return UInt32(bitPattern: flags)
    }

    /// ioctl(2) `FS_IOC_SETFLAGS` on an open descriptor.
    public static func set(fd: Int32, flags: UInt32, path: String? = nil) throws(SystemCallError) {
        var value = Int32(bitPattern: flags)
        try systemCall("ioctl(FS_IOC_SETFLAGS)", path: path) { ioctl(fd, img_FS_IOC_SETFLAGS, &value) }
    }

    /// Whether `path` has the immutable flag. False on filesystems without inode flags.
    public static func isImmutable(_ path: String) throws(SystemCallError) -> Bool {
        do {
            return try get(path) & immutable != 0
        } catch where error.errno == .notSupported || error.errno == Errno(rawValue: ENOTTY) || error.errno == .invalidArgument {
            return false
        }
    }

    /// `chattr +i` / `chattr -i` on `path`: FS_IOC_GETFLAGS then FS_IOC_SETFLAGS. Needs
    /// CAP_LINUX_IMMUTABLE.
    public static func setImmutable(_ path: String, _ on: Bool) throws(SystemCallError) {
        let fd = try openForFlags(path)
        defer { Glibc.close(fd) }
        let flags = try get(fd: fd, path: path)
        let wanted = on ? flags | immutable : flags & ~immutable
        if wanted != flags { try set(fd: fd, flags: wanted, path: path) }
    }

    /// Regular files and directories only; O_NONBLOCK so that a fifo cannot hang the open.
    private static func openForFlags(_ path: String) throws(SystemCallError) -> Int32 {
        try systemCall("open", path: path) {
            Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        }
    }
}
