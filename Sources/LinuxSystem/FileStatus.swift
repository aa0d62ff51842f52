import CShims
import Glibc

/// A point in time as the kernel stores it in an inode.
public struct FileTime: Sendable, Equatable, Hashable, Comparable, Codable {
    public var seconds: Int64
    public var nanoseconds: Int

    public init(seconds: Int64, nanoseconds: Int) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    init(_ time: timespec) {
        self.init(seconds: Int64(time.tv_sec), nanoseconds: Int(time.tv_nsec))
    }

    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: nanoseconds) }

    public static func < (lhs: FileTime, rhs: FileTime) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }

    /// Seconds since the epoch as a floating-point number (for Foundation's Date).
    public var timeIntervalSince1970: Double { Double(seconds) + Double(nanoseconds) / 1e9 }
}

/// What stat(2) says about a file, in Swift types.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, blockDevice, characterDevice, fifo, socket, unknown
    }

    public var kind: Kind
    /// Permission bits with setuid, setgid and sticky (`st_mode & 07777`).
    public var permissions: UInt32
    public var owner: UInt32
    public var group: UInt32
    public var size: UInt64
    /// Allocated 512-byte blocks (`st_blocks`).
    public var blocks: UInt64
    public var device: UInt64
    public var inode: UInt64
    public var links: UInt64
    /// The device a device node stands for (`st_rdev`).
    public var deviceNumber: UInt64
    public var accessTime: FileTime
    public var modificationTime: FileTime
    public var changeTime: FileTime

    /// Bytes allocated on disk (what du(1) counts).
    public var allocatedBytes: UInt64 { blocks &* 512 }

    init(_ s: stat) {
        switch s.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        case S_IFBLK: kind = .blockDevice
        case S_IFCHR: kind = .characterDevice
        case S_IFIFO: kind = .fifo
        case S_IFSOCK: kind = .socket
        default: kind = .unknown
        }
        permissions = UInt32(s.st_mode & 0o7777)
        owner = s.st_uid
        group = s.st_gid
        size = UInt64(max(0, s.st_size))
        blocks = UInt64(max(0, s.st_blocks))
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        links = UInt64(s.st_nlink)
        deviceNumber = UInt64(s.st_rdev)
        accessTime = FileTime(s.st_atim)
        modificationTime = FileTime(s.st_mtim)
        changeTime = FileTime(s.st_ctim)
    }

    /// lstat(2): the file itself, a symlink as a symlink.
    public static func lstat(_ path: String) throws(SystemCallError) -> FileStatus {
        var s = Glibc.stat()
        try systemCall("lstat", path: path) { callLstat(path, &s) }
        return FileStatus(s)
    }

    /// stat(2): follows symlinks.
    public static func stat(_ path: String) throws(SystemCallError) -> FileStatus {
        var s = Glibc.stat()
        try systemCall("stat", path: path) { callStat(path, &s) }
        return FileStatus(s)
    }

    /// fstat(2) on an open descriptor.
    public static func fstat(_ fd: Int32, path: String? = nil) throws(SystemCallError) -> FileStatus {
        var s = Glibc.stat()
        try systemCall("fstat", path: path) { callFstat(fd, &s) }
        return FileStatus(s)
    }

    /// lstat(2), or nil when nothing is at `path` (ENOENT, ENOTDIR).
    public static func lstatIfPresent(_ path: String) throws(SystemCallError) -> FileStatus? {
        do {
            return try lstat(path)
        } catch where error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory {
            return nil
        }
    }

    /// The birth time of `path` (not following a final symlink) from statx(2) `STATX_BTIME`, or nil
    /// when the filesystem does not record one.
    public static func birthTime(_ path: String) throws(SystemCallError) -> FileTime? {
        var seconds: Int64 = 0
        var nanoseconds: UInt32 = 0
        let result = try systemCall("statx", path: path) {
            img_statx_btime(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, &seconds, &nanoseconds)
        }
        return result == 0 ? FileTime(seconds: seconds, nanoseconds: Int(nanoseconds)) : nil
    }
}

// File-scope forwarders: inside FileStatus the names stat/lstat/fstat mean its own static methods.
private func callStat(_ path: String, _ s: UnsafeMutablePointer<stat>) -> Int32 { stat(path, s) }
private func callLstat(_ path: String, _ s: UnsafeMutablePointer<stat>) -> Int32 { lstat(path, s) }
private func callFstat(_ fd: Int32, _ s: UnsafeMutablePointer<stat>) -> Int32 { fstat(fd, s) }
