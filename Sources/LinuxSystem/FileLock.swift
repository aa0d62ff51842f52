import CShims
import Glibc
import Synchronization
import SystemPackage

/// An open file description lock (OFD lock, fcntl(2) `F_OFD_SETLK`) on a whole file.
///
/// OFD locks belong to the open file description, not to the process: two descriptors opened
/// separately in one process conflict with each other (unlike POSIX record locks), they survive
/// fork and are released when the last descriptor of the description is closed, including when the
/// process is killed. That is what the image store needs: a crash never leaves an image locked.
public final class FileLock: Sendable {
    public enum Kind: Sendable {
        /// `F_RDLCK`: several readers may hold it at once.
        case shared
        /// `F_WRLCK`: one holder, no readers.
        case exclusive
    }

    /// The locked file's path, as given.
    public let path: String
    public let kind: Kind
    /// The descriptor that carries the lock; closing it releases the lock.
    public let descriptor: FileDescriptor
    /// Set once the descriptor is closed, so that `release` and deinit never close it twice.
    private let closed = Mutex(false)

    private init(path: String, kind: Kind, descriptor: FileDescriptor) {
        self.path = path
        self.kind = kind
        self.descriptor = descriptor
    }

    deinit {
        close()
    }

    /// Closes the descriptor, which releases the lock. Idempotent.
    public func close() {
        let wasClosed = closed.withLock { value in
            defer { value = true }
            return value
        }
        if !wasClosed { try? descriptor.close() }
    }

    /// Releases the lock and removes the lock file when no one else holds it: upgrades to an
    /// exclusive lock (F_OFD_SETLK F_WRLCK, which fails while others hold theirs), unlinks, closes.
    /// Lockers check after locking that the file they locked is still linked (see `tryLock`), so an
    /// unlink cannot leave two holders on two different files.
    public func releaseRemovingFile() {
        let isClosed = closed.withLock { $0 }
        if isClosed { return }
        if (try? FileLock.setLock(descriptor, kind: .exclusive, path: path)) == true {
            unlink(path)
        }
        close()
    }

    /// Opens (creating with `mode` when missing) `path` and takes an OFD lock without waiting:
    /// open(2) + fcntl(2) `F_OFD_SETLK`. Returns nil when another holder conflicts (the file is
    /// busy); throws `SystemCallError` on any other failure.
    public static func tryLock(path: String, kind: Kind, create: Bool = true, mode: mode_t = 0o600) throws(SystemCallError) -> FileLock? {
        var flags = O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW
        if create { flags |= O_CREAT }
        while true {
            let fd = try systemCall("open", path: path) { Glibc.open(path, flags, mode) }
            let descriptor = FileDescriptor(rawValue: fd)
            do {
                guard try setLock(descriptor, kind: kind, path: path) else {
                    try? descriptor.close()
                    return nil
                }
                // The previous holder may have unlinked the file between our open and our lock:
                // then we hold a lock on a dead inode; start again with the file now at `path`.
                var opened = stat()
                var current = stat()
                try systemCall("fstat", path: path) { fstat(fd, &opened) }
                if opened.st_nlink > 0, stat(path, &current) == 0,
                   current.st_dev == opened.st_dev, current.st_ino == opened.st_ino {
                    return FileLock(path: path, kind: kind, descriptor: descriptor)
                }
                try? descriptor.close()
                if !create { return nil }
            } catch {
                try? descriptor.close()
                throw error
            }
        }
    }

    /// Takes an OFD lock on an already open descriptor without waiting: fcntl(2) `F_OFD_SETLK`.
    /// Returns false when another open file description holds a conflicting lock.
    public static func setLock(_ descriptor: FileDescriptor, kind: Kind, path: String? = nil) throws(SystemCallError) -> Bool {
        var type = Int16(kind == .shared ? F_RDLCK : F_WRLCK)
        while true {
            if img_ofd_lock(descriptor.rawValue, img_F_OFD_SETLK, &type, nil) == 0 { return true }
            let code = img_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EACCES { return false }
            throw SystemCallError("fcntl(F_OFD_SETLK)", errno: Errno(rawValue: code), path: path)
        }
    }

    /// Releases the lock but keeps the descriptor open: fcntl(2) `F_OFD_SETLK` with `F_UNLCK`.
    public func unlock() throws(SystemCallError) {
        var type = Int16(F_UNLCK)
        try systemCall("fcntl(F_OFD_SETLK)", path: path) { img_ofd_lock(descriptor.rawValue, img_F_OFD_SETLK, &type, nil) }
    }

    /// Whether some other open file description holds a lock on `path` that conflicts with `kind`:
    /// fcntl(2) `F_OFD_GETLK`. A missing file is not locked.
    public static func isLocked(path: String, against kind: Kind = .exclusive) throws(SystemCallError) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW)
        if fd < 0 {
            let code = img_errno()
            if code == ENOENT { return false }
            throw SystemCallError("open", errno: Errno(rawValue: code), path: path)
        }
        defer { Glibc.close(fd) }
        var type = Int16(kind == .shared ? F_RDLCK : F_WRLCK)
        try systemCall("fcntl(F_OFD_GETLK)", path: path) { img_ofd_lock(fd, img_F_OFD_GETLK, &type, nil) }
        return type != Int16(F_UNLCK)
    }

    /// The processes that hold locks on the file with this device and inode. /proc/locks names the
    /// owner of POSIX and flock locks, but prints -1 for OFD locks (they belong to an open file
    /// description, not a process), so for those every process's /proc/PID/fdinfo/* is read: the
    /// kernel lists there the locks held through each descriptor (what lslocks(8) does). Returns
    /// pids without duplicates; -1 only when the holder could not be found (no access to /proc).
    public static func holders(device: UInt64, inode: UInt64) -> [Int32] {
        let major = (device >> 8) & 0xfff | ((device >> 32) & ~0xfff)
        let minor = (device & 0xff) | ((device >> 12) & ~0xff)
        /// Parses "1: OFDLCK ADVISORY  WRITE 1234 00:2c:5678 0 EOF" into the pid when it is a
        /// granted lock (not a "->" waiter) on our file.
        func pid(in line: Substring) -> Int32? {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 6, !fields.contains("->") else { return nil }
            let id = fields[5].split(separator: ":")
            guard id.count == 3,
                  let maj = UInt64(id[0], radix: 16), let min = UInt64(id[1], radix: 16), let ino = UInt64(id[2]),
                  maj == major, min == minor, ino == inode else { return nil }
            return Int32(fields[4])
        }
        guard let text = try? readSmallTextFile("/proc/locks", limit: 64 << 20) else { return [] }
        var pids: [Int32] = []
        var unknown = false
        for line in text.split(separator: "\n") {
            guard let found = pid(in: line) else { continue }
            if found > 0 {
                if !pids.contains(found) { pids.append(found) }
            } else {
                unknown = true
            }
        }
        guard unknown else { return pids }
        var resolved = false
        for process in (try? FileSystem.entries("/proc")) ?? [] {
            guard let processID = Int32(process), processID > 0,
                  let descriptors = try? FileSystem.entries("/proc/\(process)/fdinfo") else { continue }
            for descriptor in descriptors {
                guard let info = try? readSmallTextFile("/proc/\(process)/fdinfo/\(descriptor)", limit: 1 << 16),
                      info.contains("lock:") else { continue }
                for line in info.split(separator: "\n") where line.hasPrefix("lock:") {
                    if pid(in: line.dropFirst(5)) != nil {
                        resolved = true
                        if !pids.contains(processID) { pids.append(processID) }
                    }
                }
            }
        }
        if !resolved { pids.append(-1) }
        return pids
    }
}

/// Reads a small text file (procfs, sysfs, side files) into a String: open(2) + read(2).
/// Refuses files larger than `limit` bytes so that a hostile file cannot exhaust memory.
/// Up to `limit` bytes of the regular file at `path` (reading stops there). Opened with O_NONBLOCK
/// and checked with fstat(2) on that descriptor, so a FIFO or device at the path (or swapped in
/// after a stat) neither blocks nor streams: EINVAL ("not a regular file").
public func readRegularFile(_ path: String, upTo limit: Int) throws(SystemCallError) -> [UInt8] {
    let fd = try systemCall("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) }
    defer { Glibc.close(fd) }
    guard try FileStatus.fstat(fd, path: path).kind == .regular else {
        throw SystemCallError("open", errno: .invalidArgument, path: path)
    }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while bytes.count < limit {
        let count = min(buffer.count, limit - bytes.count)
        let n = try systemCall("read", path: path) { Glibc.read(fd, &buffer, count) }
        if n == 0 { break }
        bytes.append(contentsOf: buffer[0..<n])
    }
    return bytes
}

/// Through `readRegularFile` (procfs and sysfs files are regular files too), so a side file that
/// is a FIFO cannot block the caller.
public func readSmallTextFile(_ path: String, limit: Int = 1 << 20) throws(SystemCallError) -> String {
    let bytes = try readRegularFile(path, upTo: limit + 1)
    if bytes.count > limit { throw SystemCallError("read", errno: .fileTooLarge, path: path) }
    return String(decoding: bytes, as: UTF8.self)
}
