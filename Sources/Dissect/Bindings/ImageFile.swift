import CShims
import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// An image opened read-only: a regular file or a block device. Reads go through pread(2) so
/// that concurrent probes do not share a file position. Lives in Bindings/ because it touches
/// raw buffers and ioctl(2).
public final class ImageFile: RandomAccessSource, @unchecked Sendable {
    // Immutable after init (fd, size, path, kind); pread does not use the shared file offset, so
    // reads from several threads are safe. The descriptor is closed in deinit only.
    public let path: String
    public let descriptor: FileDescriptor
    public let size: UInt64
    public let isBlockDevice: Bool
    /// Logical sector size of a block device (BLKSSZGET); nil for a regular file.
    public let logicalSectorSize: Int?

    public enum Error: Swift.Error, CustomStringConvertible {
        case notAnImage(String)
        public var description: String {
            switch self {
            case .notAnImage(let path): "\(path) is neither a regular file nor a block device"
            }
        }
    }

    /// Opens through `UserFile`: a FIFO, socket or character device is refused at once (it would
    /// block the open or stream for ever) with `UserFile.Error.wrongType`.
    public init(path: String) throws {
        let (fd, status) = try UserFile.open(path, accepting: .image)
        self.path = path
        self.descriptor = fd
        if status.kind == .regular {
            size = status.size
            isBlockDevice = false
            logicalSectorSize = nil
        } else if status.kind == .blockDevice {
            do {
                size = try BlockDevice.size(fd: fd.rawValue, path: path)
                logicalSectorSize = try BlockDevice.logicalSectorSize(fd: fd.rawValue, path: path)
            } catch {
                try? fd.close()
                throw error
            }
            isBlockDevice = true
        } else {
            try? fd.close()
            throw Error.notAnImage(path)
        }
    }

    deinit { try? descriptor.close() }

    public func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try checkRange(offset, count)
        if count == 0 { return [] }
        var done = 0
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            while done < count {
                let chunk = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[done...])
                let n = try descriptor.read(fromAbsoluteOffset: Int64(offset) + Int64(done), into: chunk)
                if n == 0 { break }
                done += n
            }
            initialized = done
        }
        guard done == count else { throw RandomAccessSourceError.shortRead(offset: offset, wanted: count, got: done) }
        return bytes
    }
}
