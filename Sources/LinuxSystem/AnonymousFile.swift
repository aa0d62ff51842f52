import Glibc
import SystemPackage

/// A regular file without a name until it is complete: open(2) with O_TMPFILE, then linkat(2).
/// A process killed while writing leaves nothing behind, because the kernel frees an unnamed
/// inode when its last descriptor closes.
public enum AnonymousFile {
    /// O_TMPFILE: Swift's Glibc module is built without _GNU_SOURCE, so the macro is missing. The
    /// kernel value is __O_TMPFILE (0o20000000, the same on every architecture) | O_DIRECTORY
    /// (which differs between architectures, so it is taken from Glibc).
    static let flag: Int32 = 0o20000000 | O_DIRECTORY

    /// An unnamed file in `directory` (write-only, or read-write with `readWrite`) with
    /// permissions `mode` (open(2) with O_TMPFILE, then fchmod(2), so the umask does not change the
    /// mode). nil when the file system does not support O_TMPFILE (EOPNOTSUPP, or EISDIR/EINVAL
    /// from kernels and file systems that predate it): the caller then falls back to a named
    /// temporary.
    public static func open(in directory: String, mode: mode_t, readWrite: Bool = false) throws(SystemCallError) -> FileDescriptor? {
        let fd: Int32
        do {
            fd = try systemCall("open(O_TMPFILE)", path: directory) {
                Glibc.open(directory, flag | (readWrite ? O_RDWR : O_WRONLY) | O_CLOEXEC, mode)
            }
        } catch {
            guard error.errno == .notSupported || error.errno == .isDirectory || error.errno == .invalidArgument else {
                throw error
            }
            return nil
        }
        do {
            try systemCall("fchmod", path: directory) { fchmod(fd, mode) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return FileDescriptor(rawValue: fd)
    }

    /// Gives the unnamed file `fd` the name `path`: linkat(2) of `/proc/self/fd/N` with
    /// AT_SYMLINK_FOLLOW (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH). Fails with EEXIST when
    /// `path` exists: nothing is ever replaced.
    public static func link(_ fd: FileDescriptor, to path: String) throws(SystemCallError) {
        let source = "/proc/self/fd/\(fd.rawValue)"
        try systemCall("linkat", path: path) {
            linkat(AT_FDCWD, source, AT_FDCWD, path, AT_SYMLINK_FOLLOW)
        }
    }
}
