import CShims
import Glibc

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
