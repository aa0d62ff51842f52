import CBtrfsUtil
import CShims
import Glibc
import SystemPackage

/// Path-level file system calls the image store needs, one wrapper per call, each throwing
/// `SystemCallError` with the path.
public enum FileSystem {
    /// The names in directory `path`, without "." and "..": opendir(3) + readdir(3).
    public static func entries(_ path: String) throws(SystemCallError) -> [String] {
        guard let dir = opendir(path) else { throw SystemCallError.current("opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Whether anything (a dangling symlink included) exists at `path`: lstat(2).
    public static func exists(_ path: String) -> Bool {
        var s = stat()
        return lstat(path, &s) == 0
    }

    /// mkdir(2) with `mode` (the umask still applies, so the mode is set again with chmod).
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(SystemCallError) {
        try systemCall("mkdir", path: path) { mkdir(path, mode) }
        try systemCall("chmod", path: path) { chmod(path, mode) }
    }

    /// mkdir -p: creates `path` and missing parents (parents 0755, the last one `mode`).
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SystemCallError) {
        if let status = try FileStatus.lstatIfPresent(path) {
            if status.kind == .directory { return }
            throw SystemCallError("mkdir", errno: .notDirectory, path: path)
        }
        let parent = parentDirectory(path)
        if parent != path { try makeDirectories(parent, mode: 0o755) }
        do {
            try makeDirectory(path, mode: mode)
        } catch where error.errno == .fileExists {
            return
        }
    }

    /// The directory part of a path ("/" for "/x", "." for "x").
    public static func parentDirectory(_ path: String) -> String {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        if slash == trimmed.startIndex { return "/" }
        return String(trimmed[..<slash])
    }

    /// The last component of a path.
    public static func baseName(_ path: String) -> String {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// Creates an empty regular file with `mode`, failing when `path` exists: open(2) with
    /// O_CREAT|O_EXCL, then fchmod(2) so the umask does not change the mode.
    public static func createFile(_ path: String, mode: mode_t = 0o644) throws(SystemCallError) {
        let fd = try systemCall("open", path: path) {
            open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        }
        defer { close(fd) }
        try systemCall("fchmod", path: path) { fchmod(fd, mode) }
    }

    /// Writes `bytes` to `path` atomically: a temporary file beside it, fsync(2), rename(2).
    public static func writeFileAtomically(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) throws(SystemCallError) {
        let temporary = "\(parentDirectory(path))/.#\(baseName(path)).\(randomHex(8))"
        let fd = try systemCall("open", path: temporary) {
            open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        }
        do {
            try systemCall("fchmod", path: temporary) { fchmod(fd, mode) }
            var offset = 0
            while offset < bytes.count {
                let written = try systemCall("write", path: temporary) {
                    bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                }
                offset += written
            }
            try systemCall("fsync", path: temporary) { fsync(fd) }
            close(fd)
            try systemCall("rename", path: path) { rename(temporary, path) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
    }

    /// Reads a whole small file (metadata, side files): refuses more than `limit` bytes.
    public static func readFile(_ path: String, limit: Int = 1 << 20) throws(SystemCallError) -> [UInt8] {
        Array(try readSmallTextFile(path, limit: limit).utf8)
    }

    /// `count` random bytes as hex (the system generator, getrandom(2)), for temporary names.
    public static func randomHex(_ count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return bytes.map { byte -> String in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }

    /// unlink(2).
    public static func removeFile(_ path: String) throws(SystemCallError) {
        try systemCall("unlink", path: path) { unlink(path) }
    }

    /// unlink(2), ignoring a missing file.
    public static func removeFileIfPresent(_ path: String) throws(SystemCallError) {
        do {
            try removeFile(path)
        } catch where error.errno == .noSuchFileOrDirectory {
        }
    }

    /// chmod(2).
    public static func setPermissions(_ path: String, _ mode: mode_t) throws(SystemCallError) {
        try systemCall("chmod", path: path) { chmod(path, mode) }
    }

    /// symlink(2): creates `path` pointing at `target`.
    public static func createSymbolicLink(_ path: String, target: String) throws(SystemCallError) {
        try systemCall("symlink", path: path) { symlink(target, path) }
    }

    /// readlink(2).
    public static func symbolicLinkTarget(_ path: String) throws(SystemCallError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.count
        let n = try systemCall("readlink", path: path) { readlink(path, &buffer, count - 1) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// fsync(2) on `path` (a file or a directory).
    public static func synchronize(_ path: String) throws(SystemCallError) {
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) }
        defer { close(fd) }
        try systemCall("fsync", path: path) { fsync(fd) }
    }

    /// fsync(2) on an open descriptor (`path` only names it in an error).
    public static func synchronize(_ descriptor: FileDescriptor, path: String) throws(SystemCallError) {
        try systemCall("fsync", path: path) { fsync(descriptor.rawValue) }
    }

    /// Whether the filesystem holding `path` is mounted read-only: statvfs(3) `ST_RDONLY`.
    public static func isOnReadOnlyMount(_ path: String) -> Bool {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return false }
        return info.f_flag & UInt(ST_RDONLY) != 0
    }

    /// Bytes allocated by the tree at `path`, as `du -s` counts them: st_blocks of every inode,
    /// hard-linked inodes once. Symlinks are not followed. Unreadable entries are skipped.
    public static func diskUsage(_ path: String) -> UInt64 {
        var seen = Set<[UInt64]>()
        var total: UInt64 = 0
        var pending = [path]
        while let current = pending.popLast() {
            guard let status = try? FileStatus.lstat(current) else { continue }
            if status.links > 1 && status.kind != .directory {
                if !seen.insert([status.device, status.inode]).inserted { continue }
            }
            total &+= status.allocatedBytes
            if status.kind == .directory, let names = try? entries(current) {
                for name in names { pending.append(current + "/" + name) }
            }
        }
        return total
    }

    /// Removes the tree at `path` (like `rm -rf --one-file-system`, never following symlinks):
    /// unlink(2), rmdir(2); btrfs subvolumes inside are deleted as subvolumes. A missing path is
    /// not an error. A directory beneath `path` that is a mount point (a bind mount too) is never
    /// entered: the removal stops with EBUSY there, since what is mounted belongs to someone
    /// else (a host directory bound into a tree must not be emptied with it).
    public static func removeTree(_ path: String) throws(SystemCallError) {
        try removeTree(path, top: true)
    }

    private static func removeTree(_ path: String, top: Bool) throws(SystemCallError) {
        guard let status = try FileStatus.lstatIfPresent(path) else { return }
        guard status.kind == .directory else {
            try removeFileIfPresent(path)
            return
        }
        if !top, img_is_mount_root(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW) == 1 {
            throw SystemCallError("rmdir", errno: .resourceBusy, path: path)
        }
        // A subvolume root (inode 256 on btrfs) goes in one ioctl with everything beneath it.
        if status.inode == 256, (try? Btrfs.isSubvolume(path)) == true {
            try Btrfs.deleteSubvolume(path, recursive: true)
            return
        }
        for name in try entries(path) {
            try removeTree(path + "/" + name, top: false)
        }
        try systemCall("rmdir", path: path) { rmdir(path) }
    }

    /// BLKROGET: whether the block device at `path` is read-only.
    public static func isBlockDeviceReadOnly(_ path: String) throws(SystemCallError) -> Bool {
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        defer { close(fd) }
        var value: Int32 = 0
        try systemCall("ioctl(BLKROGET)", path: path) { ioctl(fd, img_BLKROGET, &value) }
        return value != 0
    }

    /// BLKROSET: marks the block device at `path` read-only (or writable) in the kernel.
    public static func setBlockDeviceReadOnly(_ path: String, _ readOnly: Bool) throws(SystemCallError) {
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        defer { close(fd) }
        var value: Int32 = readOnly ? 1 : 0
        try systemCall("ioctl(BLKROSET)", path: path) { ioctl(fd, img_BLKROSET, &value) }
    }

    /// BLKGETSIZE64: the size in bytes of the block device at `path`.
    public static func blockDeviceSize(_ path: String) throws(SystemCallError) -> UInt64 {
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        defer { close(fd) }
        var value: UInt64 = 0
        try systemCall("ioctl(BLKGETSIZE64)", path: path) { ioctl(fd, img_BLKGETSIZE64, &value) }
        return value
    }
}

extension FileSystem {
    /// syncfs(2) on the filesystem holding `path`: used after writing a whole tree, where an
    /// fsync per file would cost far more.
    public static func synchronizeFileSystem(_ path: String) throws(SystemCallError) {
        let fd = try systemCall("open", path: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        defer { close(fd) }
        try systemCall("syncfs", path: path) { img_syncfs(fd) }
    }
}

extension FileSystem {
    /// The absolute path with every symlink resolved: realpath(3).
    public static func canonicalPath(_ path: String) throws(SystemCallError) -> String {
        guard let resolved = realpath(path, nil) else { throw SystemCallError.current("realpath", path: path) }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
