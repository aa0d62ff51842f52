import CShims
import Glibc
import SystemPackage

/// Copy-on-write file clones: ioctl(2) `FICLONE`, which shares the source's extents with the
/// destination (btrfs, xfs with reflink, bcachefs). Nothing is copied; later writes to either file
/// diverge.
public enum Reflink {
    /// Makes `destination` (an open, writable regular file) share all of `source`'s data:
    /// ioctl(destination, FICLONE, source). Returns false when the filesystem cannot do it here
    /// (EXDEV across filesystems, EOPNOTSUPP/ENOTTY/EINVAL where reflinks are unsupported), so the
    /// caller can copy instead; throws on any other failure.
    public static func clone(from source: Int32, to destination: Int32, path: String? = nil) throws(SystemCallError) -> Bool {
        while true {
            if ioctl(destination, img_FICLONE, source) == 0 { return true }
            let code = img_errno()
            switch code {
            case EINTR: continue
            case EXDEV, EOPNOTSUPP, ENOTTY, EINVAL, ENOSYS, EPERM: return false
            default: throw SystemCallError("ioctl(FICLONE)", errno: .init(rawValue: code), path: path)
            }
        }
    }

    /// Reflinks file `source` to a new file `destination` (mode 0644, failing when it exists).
    /// Returns false, leaving no destination behind, when a reflink is not possible.
    public static func cloneFile(_ source: String, to destination: String) throws(SystemCallError) -> Bool {
        let input = try systemCall("open", path: source) { open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        defer { close(input) }
        let output = try systemCall("open", path: destination) {
            open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
        }
        defer { close(output) }
        do {
            if try clone(from: input, to: output, path: destination) { return true }
        } catch {
            unlink(destination)
            throw error
        }
        unlink(destination)
        return false
    }
}

extension Reflink {
    /// A private copy-on-write clone of the open regular file `source`, made in `directory`
    /// (which must be on the same mount as the source: FICLONE does not cross mounts).
    ///
    /// The clone is an AnonymousFile (O_TMPFILE, read-write), so it never has a name and nothing is
    /// left behind when the process dies, even by SIGKILL; where the file system cannot make an
    /// unnamed file it is a named file
    /// (O_CREAT|O_EXCL, mode 0600) unlinked at once. Then ioctl(clone, FICLONE, source).
    ///
    /// Returns nil, leaving nothing behind, when the file system cannot reflink (ext4, tmpfs, a
    /// file with nodatacow ...); throws when the file cannot be created at all (a read-only
    /// mount, no permission). The caller owns the returned read-write descriptor.
    public static func privateClone(of source: Int32, in directory: String) throws(SystemCallError) -> FileDescriptor? {
        try privateClone(of: source, in: directory, unnamed: true)
    }

    /// `unnamed: false` skips O_TMPFILE (tests of the named fallback).
    static func privateClone(of source: Int32, in directory: String, unnamed: Bool) throws(SystemCallError) -> FileDescriptor? {
        var fd: Int32 = -1
        if unnamed, let file = try AnonymousFile.open(in: directory, mode: 0o600, readWrite: true) { fd = file.rawValue }
        if fd < 0 {
            let name = "\(directory)/.#imagectl-clone-\(FileSystem.randomHex(8))"
            fd = try systemCall("open", path: name) { open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600) }
            // From here on only the descriptor names the clone.
            _ = unlink(name)
        }
        let clone = FileDescriptor(rawValue: fd)
        let cloned: Bool
        do {
            cloned = try Reflink.clone(from: source, to: fd, path: directory)
        } catch {
            try? clone.close()
            throw error
        }
        if !cloned { try? clone.close() }
        return cloned ? clone : nil
    }
}
