import CShims
import Glibc

/// Copies that keep what an OS image needs: holes in sparse files, and for trees owners, modes,
/// timestamps, extended attributes (ACLs and file capabilities included), hard links, symlinks,
/// device nodes and fifos. Each regular file is reflinked (FICLONE) when the filesystem allows it,
/// else copied sparsely (lseek(2) SEEK_DATA/SEEK_HOLE, then copy_file_range(2) or read/write).
///
/// Written by hand because no library on the machine does this: libarchive's disk reader and
/// writer round-trip metadata but not reflinks, and coreutils' `cp -a` is a process, not an API.
public enum FileCopy {
    /// What a copy did, for callers and tests.
    public struct Statistics: Sendable, Equatable {
        public var files = 0
        public var directories = 0
        public var symbolicLinks = 0
        public var specialFiles = 0
        public var hardLinks = 0
        /// Regular files that were reflinked instead of copied.
        public var reflinked = 0
        /// Bytes of file data copied (holes and reflinked data not counted).
        public var bytesCopied: UInt64 = 0
        public init() {}
    }

    /// Told the number of bytes each step copied (or reflinked), for a progress display. Called
    /// on the copying thread, at most once per 64 MiB of a file plus once per file.
    public typealias Progress = (UInt64) -> Void

    /// Refuse trees nested deeper than this (systemd's bound for image trees), so that a hostile
    /// tree cannot exhaust the stack.
    public static let maximumDepth = 128 * 8

    /// Copies the data of open file `source` into open file `destination` (which must be empty):
    /// a reflink when possible, else only the data segments, leaving holes as holes, then
    /// ftruncate(2) to the source size. `size` is needed for a block device (fstat says 0 there);
    /// a regular file's own size is used otherwise. Returns (reflinked, bytes copied).
    @discardableResult
    public static func copyData(from source: Int32, to destination: Int32, size knownSize: UInt64? = nil, reflink: Bool = true, path: String? = nil,
                                progress: Progress? = nil) throws(SystemCallError) -> (reflinked: Bool, bytes: UInt64) {
        if reflink, knownSize == nil, try Reflink.clone(from: source, to: destination, path: path) {
            if let progress { progress(try FileStatus.fstat(source, path: path).size) }
            return (true, 0)
        }
        let size: UInt64
        if let knownSize { size = knownSize } else { size = try FileStatus.fstat(source, path: path).size }
        // Holes count as done when they are skipped, so that the bytes add up to the size.
        var reported: UInt64 = 0
        func report(upTo offset: Int64) {
            guard let progress, UInt64(offset) > reported else { return }
            progress(UInt64(offset) - reported)
            reported = UInt64(offset)
        }
        defer { report(upTo: Int64(size)) }
        var copied: UInt64 = 0
        var position: Int64 = 0
        let end = Int64(size)
        var useCopyRange = true
        while position < end {
            // Next data segment [dataStart, dataEnd).
            let dataStart = lseek(source, off_t(position), SEEK_DATA)
            if dataStart < 0 {
                let code = img_errno()
                if code == ENXIO { break }  // only a hole remains
                if code == EINVAL || code == EOPNOTSUPP {
                    // No SEEK_DATA here: copy the rest as data.
                    copied += try copyRange(source, destination, from: position, to: end, useCopyRange: &useCopyRange, path: path,
                                            progress: progress == nil ? nil : { report(upTo: $0) })
                    break
                }
                throw SystemCallError("lseek(SEEK_DATA)", errno: .init(rawValue: code), path: path)
            }
            var dataEnd = try systemCall("lseek(SEEK_HOLE)", path: path) { lseek(source, dataStart, SEEK_HOLE) }
            if Int64(dataEnd) > end { dataEnd = off_t(end) }
            report(upTo: Int64(dataStart))
            copied += try copyRange(source, destination, from: Int64(dataStart), to: Int64(dataEnd), useCopyRange: &useCopyRange, path: path,
                                    progress: progress == nil ? nil : { report(upTo: $0) })
            position = Int64(dataEnd)
        }
        try systemCall("ftruncate", path: path) { ftruncate(destination, off_t(end)) }
        return (false, copied)
    }

    /// The data segments of open file `fd` (of `size` bytes) as byte ranges, found with lseek(2)
    /// SEEK_DATA/SEEK_HOLE; everything between them reads as zeros. Filesystems without
    /// SEEK_DATA support report the whole file as one segment.
    public static func dataSegments(of fd: Int32, size: UInt64, path: String? = nil) throws(SystemCallError) -> [Range<UInt64>] {
        var segments: [Range<UInt64>] = []
        var position: Int64 = 0
        let end = Int64(size)
        while position < end {
            let dataStart = lseek(fd, off_t(position), SEEK_DATA)
            if dataStart < 0 {
                let code = img_errno()
                if code == ENXIO { break }
                if code == EINVAL || code == EOPNOTSUPP {
                    segments.append(UInt64(position)..<UInt64(end))
                    break
                }
                throw SystemCallError("lseek(SEEK_DATA)", errno: .init(rawValue: code), path: path)
            }
            if Int64(dataStart) >= end { break }
            var dataEnd = Int64(try systemCall("lseek(SEEK_HOLE)", path: path) { lseek(fd, dataStart, SEEK_HOLE) })
            if dataEnd > end { dataEnd = end }
            segments.append(UInt64(dataStart)..<UInt64(dataEnd))
            position = dataEnd
        }
        return segments
    }

    /// Copies bytes [start, end) at the same offsets: copy_file_range(2) (which the kernel may turn
    /// into a server-side or reflinked copy), falling back to pread(2)/pwrite(2) where the kernel
    /// refuses it (EXDEV across filesystem types, EINVAL, ENOSYS, EOPNOTSUPP).
    private static func copyRange(_ source: Int32, _ destination: Int32, from start: Int64, to end: Int64, useCopyRange: inout Bool, path: String?,
                                  progress: ((Int64) -> Void)? = nil) throws(SystemCallError) -> UInt64 {
        var offset = start
        // Smaller steps when somebody shows progress: one call per 64 MiB costs nothing measurable.
        let step: Int64 = progress == nil ? 1 << 30 : 64 << 20
        while offset < end && useCopyRange {
            var inOffset = offset
            var outOffset = offset
            let n = img_copy_file_range(source, &inOffset, destination, &outOffset, UInt64(min(end - offset, step)))
            if n > 0 {
                offset += n
                progress?(offset)
                continue
            }
            if n == 0 { break }  // source shrank meanwhile
            let code = img_errno()
            if code == EINTR { continue }
            if code == EXDEV || code == EINVAL || code == ENOSYS || code == EOPNOTSUPP || code == EBADF {
                useCopyRange = false
                break
            }
            throw SystemCallError("copy_file_range", errno: .init(rawValue: code), path: path)
        }
        if offset < end {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while offset < end {
                let want = Int(min(Int64(buffer.count), end - offset))
                let got = try systemCall("pread", path: path) { pread(source, &buffer, want, off_t(offset)) }
                if got == 0 { break }
                var written = 0
                while written < got {
                    let n = try systemCall("pwrite", path: path) {
                        buffer.withUnsafeBytes { pwrite(destination, $0.baseAddress! + written, got - written, off_t(offset) + off_t(written)) }
                    }
                    written += n
                }
                offset += Int64(got)
                if let progress, (offset - start) % (64 << 20) < Int64(got) { progress(offset) }
            }
        }
        return UInt64(offset - start)
    }

    /// Copies regular file `source` to new file `destination` (which must not exist), sparse or
    /// reflinked, with owner, mode, xattrs and timestamps.
    @discardableResult
    public static func copyFile(_ source: String, to destination: String, reflink: Bool = true, progress: Progress? = nil) throws(SystemCallError) -> Statistics {
        var statistics = Statistics()
        let status = try FileStatus.lstat(source)
        guard status.kind == .regular else { throw SystemCallError("open", errno: .invalidArgument, path: source) }
        try copyRegular(source, to: destination, status: status, reflink: reflink, progress: progress, statistics: &statistics)
        return statistics
    }

    /// Copies the tree at `source` to `destination` (a path that must not exist, or an empty
    /// directory, e.g. a fresh subvolume, whose metadata is then set from `source`). Symlinks are
    /// copied as symlinks, never followed; hard links inside the tree stay hard links.
    @discardableResult
    public static func copyTree(_ source: String, to destination: String, reflink: Bool = true, progress: Progress? = nil) throws(SystemCallError) -> Statistics {
        var statistics = Statistics()
        var links: [[UInt64]: String] = [:]
        let status = try FileStatus.lstat(source)
        if status.kind == .directory, let existing = try FileStatus.lstatIfPresent(destination) {
            guard existing.kind == .directory, try FileSystem.entries(destination).isEmpty else {
                throw SystemCallError("mkdir", errno: .fileExists, path: destination)
            }
            try copyDirectoryContents(source, to: destination, depth: 0, reflink: reflink, progress: progress, links: &links, statistics: &statistics)
            try copyMetadata(source, to: destination, status: status)
            statistics.directories += 1
            return statistics
        }
        try copyEntry(source, to: destination, status: status, depth: 0, reflink: reflink, progress: progress, links: &links, statistics: &statistics)
        return statistics
    }

    private static func copyEntry(_ source: String, to destination: String, status: FileStatus, depth: Int, reflink: Bool,
                                  progress: Progress?, links: inout [[UInt64]: String], statistics: inout Statistics) throws(SystemCallError) {
        if status.kind != .directory && status.links > 1 {
            let key = [status.device, status.inode]
            if let first = links[key] {
                try systemCall("link", path: destination) { link(first, destination) }
                statistics.hardLinks += 1
                return
            }
            links[key] = destination
        }
        switch status.kind {
        case .directory:
            guard depth < maximumDepth else { throw SystemCallError("mkdir", errno: .init(rawValue: ELOOP), path: source) }
            // 0700 while filling: nobody else gets in before the real mode is set at the end.
            try systemCall("mkdir", path: destination) { mkdir(destination, 0o700) }
            try copyDirectoryContents(source, to: destination, depth: depth + 1, reflink: reflink, progress: progress, links: &links, statistics: &statistics)
            try copyMetadata(source, to: destination, status: status)
            statistics.directories += 1
        case .regular:
            try copyRegular(source, to: destination, status: status, reflink: reflink, progress: progress, statistics: &statistics)
        case .symbolicLink:
            let target = try FileSystem.symbolicLinkTarget(source)
            try systemCall("symlink", path: destination) { symlink(target, destination) }
            try copyMetadata(source, to: destination, status: status)
            statistics.symbolicLinks += 1
        case .blockDevice, .characterDevice, .fifo, .socket:
            let type: mode_t = switch status.kind {
            case .blockDevice: S_IFBLK
            case .characterDevice: S_IFCHR
            case .fifo: S_IFIFO
            default: S_IFSOCK
            }
            try systemCall("mknod", path: destination) {
                mknod(destination, type | mode_t(status.permissions & 0o777), dev_t(status.deviceNumber))
            }
            try copyMetadata(source, to: destination, status: status)
            statistics.specialFiles += 1
        case .unknown:
            throw SystemCallError("mknod", errno: .invalidArgument, path: source)
        }
    }

    private static func copyDirectoryContents(_ source: String, to destination: String, depth: Int, reflink: Bool, progress: Progress?,
                                              links: inout [[UInt64]: String], statistics: inout Statistics) throws(SystemCallError) {
        for name in try FileSystem.entries(source).sorted() {
            let from = source + "/" + name
            let status = try FileStatus.lstat(from)
            try copyEntry(from, to: destination + "/" + name, status: status, depth: depth, reflink: reflink, progress: progress,
                          links: &links, statistics: &statistics)
        }
    }

    private static func copyRegular(_ source: String, to destination: String, status: FileStatus, reflink: Bool, progress: Progress?,
                                    statistics: inout Statistics) throws(SystemCallError) {
        // O_NONBLOCK and a type check on the descriptor: lstat said regular, but a FIFO put there
        // since must not block the copy (the flag does not matter for reading a regular file).
        let input = try systemCall("open", path: source) { open(source, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK) }
        defer { close(input) }
        guard try FileStatus.fstat(input, path: source).kind == .regular else {
            throw SystemCallError("open", errno: .invalidArgument, path: source)
        }
        let output = try systemCall("open", path: destination) {
            open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        }
        defer { close(output) }
        let result = try copyData(from: input, to: output, reflink: reflink, path: destination, progress: progress)
        if result.reflinked { statistics.reflinked += 1 }
        statistics.bytesCopied += result.bytes
        statistics.files += 1
        try copyMetadata(source, to: destination, status: status)
    }

    /// Owner, then mode (chown clears setuid/setgid, so it goes first), then xattrs (ACLs and
    /// security.capability, which chown would also clear), then timestamps (last, since the
    /// other steps change ctime/mtime of directories). Never follows a final symlink.
    static func copyMetadata(_ source: String, to destination: String, status: FileStatus) throws(SystemCallError) {
        try systemCall("lchown", path: destination) { lchown(destination, status.owner, status.group) }
        if status.kind != .symbolicLink {
            try systemCall("chmod", path: destination) { chmod(destination, mode_t(status.permissions)) }
        }
        try copyExtendedAttributes(source, to: destination)
        var times = [status.accessTime.timespec, status.modificationTime.timespec]
        try systemCall("utimensat", path: destination) { utimensat(AT_FDCWD, destination, &times, AT_SYMLINK_NOFOLLOW) }
    }

    /// Copies every extended attribute (user., trusted., security., system.posix_acl_*). A
    /// destination filesystem that cannot store one (ENOTSUP) is skipped for that attribute only.
    static func copyExtendedAttributes(_ source: String, to destination: String) throws(SystemCallError) {
        for name in try Xattr.list(source) {
            guard let value = try Xattr.get(source, name: name) else { continue }
            do {
                try Xattr.set(destination, name: name, value: value)
            } catch where error.errno == .notSupported {
                continue
            }
        }
    }
}
