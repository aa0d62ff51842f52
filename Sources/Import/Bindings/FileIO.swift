// File descriptors for importing: sequential and positioned reads of the input, positioned writes
// and holes in the output, and the zero-block scan the sparse writer needs. This is the one place
// in Import that calls libc file APIs directly; everything above it works on [UInt8] and offsets.
import Foundation
import Glibc
import LinuxSystem

/// Something a stream of bytes can be read from.
public protocol ByteSource: AnyObject {
    /// Fills `buffer[0..<n]` (up to `buffer.count` bytes; the array's count is the capacity
    /// offered and is not changed) and returns n, or 0 at the end of the stream.
    func read(into buffer: inout [UInt8]) throws -> Int
}

/// An input file (or standard input) opened read-only. Reads retry on EINTR.
public final class InputFile: ByteSource {
    public let fd: Int32
    public let path: String
    private let ownsDescriptor: Bool

    /// Opens `path` for reading through `UserFile`: a regular file or block device; a FIFO,
    /// socket or character device is refused at once (standard input, "-", is the way to
    /// stream, and it is not opened here).
    public init(path: String) throws {
        self.fd = try UserFile.open(path, accepting: .image).descriptor.rawValue
        self.path = path
        self.ownsDescriptor = true
    }

    /// Standard input, not closed on deinit.
    public init(standardInput: Void) {
        fd = 0
        path = "-"
        ownsDescriptor = false
    }

    /// A descriptor owned by someone else (not closed on deinit).
    public init(borrowing fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        ownsDescriptor = false
    }

    deinit { if ownsDescriptor { close(fd) } }

    /// read(2) into the array's storage.
    public func read(into buffer: inout [UInt8]) throws -> Int {
        let fd = self.fd
        let count = buffer.count
        return try buffer.withUnsafeMutableBytes { raw in
            try Int(systemCall("read", path: path) { Glibc.read(fd, raw.baseAddress, count) })
        }
    }

    /// pread(2) of `count` bytes at `offset` into `buffer[0..<count]`, looping over short reads.
    /// Returns the number read (less than `count` only at end of file).
    public func read(into buffer: inout [UInt8], count: Int, at offset: UInt64) throws -> Int {
        precondition(count <= buffer.count)
        let fd = self.fd
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let n = try Int(systemCall("pread", path: path) {
                    pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                })
                if n == 0 { break }
                done += n
            }
        }
        return done
    }

    /// The file's type and size (fstat(2)).
    public func status() throws -> (isRegular: Bool, size: UInt64) {
        var st = stat()
        try systemCall("fstat", path: path) { fstat(fd, &st) }
        return ((st.st_mode & S_IFMT) == S_IFREG, UInt64(max(0, st.st_size)))
    }
}

/// An output file written at explicit offsets, so that zero runs can be left as holes.
public final class OutputFile {
    public let fd: Int32
    public let path: String

    /// Opens an existing file for writing (open(2), O_WRONLY|O_CLOEXEC|O_NOFOLLOW) and truncates it.
    public init(path: String) throws {
        fd = try systemCall("open", path: path) { open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_TRUNC) }
        self.path = path
    }

    /// An anonymous read-write file in `directory` (LinuxSystem's AnonymousFile, O_TMPFILE): it
    /// has no name, so a crash cannot leave it behind. Used to spool a compressed qcow2 before
    /// converting it; a file system without O_TMPFILE is an error here.
    public init(anonymousIn directory: String) throws {
        guard let file = try AnonymousFile.open(in: directory, mode: 0o600, readWrite: true) else {
            throw SystemCallError("open(O_TMPFILE)", errno: .notSupported, path: directory)
        }
        fd = file.rawValue
        path = "\(directory)/(anonymous)"
    }

    deinit { close(fd) }

    /// pwrite(2) of `buffer[range]` at `offset`, looping over short writes.
    public func write(_ buffer: [UInt8], range: Range<Int>, at offset: UInt64) throws {
        let fd = self.fd
        var done = 0
        let total = range.count
        try buffer.withUnsafeBytes { raw in
            let base = raw.baseAddress! + range.lowerBound
            while done < total {
                let n = try Int(systemCall("pwrite", path: path) {
                    pwrite(fd, base + done, total - done, off_t(offset) + off_t(done))
                })
                if n == 0 { throw SystemCallError("pwrite", errno: .noSpace, path: path) }
                done += n
            }
        }
    }

    /// ftruncate(2): sets the final size; bytes past the last write become a hole.
    public func truncate(to size: UInt64) throws {
        try systemCall("ftruncate", path: path) { ftruncate(fd, off_t(size)) }
    }

    /// fsync(2).
    public func sync() throws {
        try systemCall("fsync", path: path) { fsync(fd) }
    }

    /// Reads the spooled file back through the same descriptor (positioned reads only); the
    /// reader must not outlive this file.
    public func reader() -> InputFile {
        InputFile(borrowing: fd, path: path)
    }
}

/// Fast tests over byte buffers that Swift would otherwise do a byte at a time.
package enum ByteScan {
    /// True when `buffer[range]` holds only zero bytes (compared a word at a time).
    public static func isZero(_ buffer: [UInt8], _ range: Range<Int>) -> Bool {
        buffer.withUnsafeBytes { raw in
            var p = raw.baseAddress! + range.lowerBound
            var left = range.count
            while left >= 32 {
                let a = p.loadUnaligned(as: UInt64.self) | p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                let b = p.loadUnaligned(fromByteOffset: 16, as: UInt64.self) | p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
                if a | b != 0 { return false }
                p += 32
                left -= 32
            }
            while left > 0 {
                if p.load(as: UInt8.self) != 0 { return false }
                p += 1
                left -= 1
            }
            return true
        }
    }
}
