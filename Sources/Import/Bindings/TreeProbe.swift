// Looks at what already exists inside an extraction directory, without following symlinks, so
// that TarEntryPolicy can refuse an entry before libarchive writes it.
import Glibc
import LinuxSystem

/// An open directory and lstat-like questions about paths beneath it.
package final class TreeProbe {
    package enum Kind { case directory, symlink, other }

    private let fd: Int32
    let path: String

    /// Opens `path` as a directory (open(2), O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC).
    package init(path: String) throws {
        fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        self.path = path
    }

    deinit { close(fd) }

    /// fstatat(2) with AT_SYMLINK_NOFOLLOW on a relative path: nil when nothing is there.
    /// Callers ask about each prefix of a path in order, so no symlink is ever followed on the way
    /// to a component they ask about (an earlier answer `.symlink` stops them).
    package func kind(of relative: [UInt8]) -> Kind? {
        var st = stat()
        let result = (relative + [0]).withUnsafeBytes { raw in
            fstatat(fd, raw.baseAddress!.assumingMemoryBound(to: CChar.self), &st, AT_SYMLINK_NOFOLLOW)
        }
        if result != 0 { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        default: return .other
        }
    }
}
