import LinuxSystem
import SystemPackage

/// A read-only file or block device read with pread(2) into caller-owned buffers, so that the hash
/// tree verifier can reuse one 1 MiB buffer per worker instead of allocating per read. This is the
/// only place in the verity code that touches raw buffers (swift-system's pread takes an
/// UnsafeMutableRawBufferPointer).
///
/// Sendable: the descriptor is an immutable Int32 and pread(2) does not move the file position,
/// so several threads may read through the same descriptor at once.
final class VerityFile: Sendable {
    let path: String
    let descriptor: FileDescriptor
    /// Size in bytes: st_size for a file, the device size (lseek SEEK_END) for a block device.
    let size: UInt64

    /// Opens `path` read-only through `UserFile` (O_NONBLOCK, type checked on the descriptor): a
    /// --verity-data FIFO or character device is refused instead of hanging the verifier.
    init(path: String) throws {
        self.path = path
        descriptor = try UserFile.open(path, accepting: .image).descriptor
        do {
            // lseek(2) to the end works for block devices too, where st_size is 0.
            let end = try descriptor.seek(offset: 0, from: .end)
            size = UInt64(max(end, 0))
        } catch let errno as Errno {
            try? descriptor.close()
            throw SystemCallError("lseek", errno: errno, path: path)
        }
    }

    deinit {
        try? descriptor.close()
    }

    /// Fills `buffer[0..<count]` with the bytes at `offset`: pread(2), looping over short reads.
    /// Reaching the end of the file before `count` bytes is an error (a truncated image).
    func read(into buffer: inout [UInt8], count: Int, at offset: UInt64) throws {
        if buffer.count < count { buffer.append(contentsOf: repeatElement(0, count: count - buffer.count)) }
        var done = 0
        while done < count {
            let got: Int
            do {
                got = try buffer.withUnsafeMutableBytes { raw in
                    let window = UnsafeMutableRawBufferPointer(rebasing: raw[done..<count])
                    return try descriptor.read(fromAbsoluteOffset: Int64(offset) + Int64(done), into: window,
                                               retryOnInterrupt: true)
                }
            } catch let errno as Errno {
                throw SystemCallError("pread", errno: errno, path: path)
            }
            if got == 0 { throw VerityFileError.truncated(path: path, offset: offset + UInt64(done), missing: count - done) }
            done += got
        }
    }

    /// Reads `count` bytes at `offset` into a new array.
    func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        try read(into: &buffer, count: count, at: offset)
        return buffer
    }
}

enum VerityFileError: Swift.Error, CustomStringConvertible {
    case truncated(path: String, offset: UInt64, missing: Int)

    var description: String {
        switch self {
        case .truncated(let path, let offset, let missing):
            return "\(path): unexpected end of file at byte offset \(offset) (\(missing) bytes missing)"
        }
    }
}
