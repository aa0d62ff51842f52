import CShims
import Foundation
import Glibc
import SystemPackage

/// Block device queries (ioctl).
public enum BlockDevice {
    /// Size in bytes (BLKGETSIZE64).
    public static func size(fd: Int32, path: String? = nil) throws -> UInt64 {
        var size: UInt64 = 0
        try systemCall("ioctl(BLKGETSIZE64)", path: path) { ioctl(fd, img_BLKGETSIZE64, &size) }
        return size
    }

    /// Logical sector size in bytes (BLKSSZGET).
    public static func logicalSectorSize(fd: Int32, path: String? = nil) throws -> Int {
        var size: Int32 = 0
        try systemCall("ioctl(BLKSSZGET)", path: path) { ioctl(fd, img_BLKSSZGET, &size) }
        return Int(size)
    }
}

/// A loop device attached to a range of a backing file, set up without udev: LOOP_CTL_GET_FREE on
/// /dev/loop-control, then one LOOP_CONFIGURE ioctl carrying the backing fd, offset, size limit
/// and flags (no window in which the device exists half-configured). devtmpfs creates /dev/loopN
/// itself; partition nodes are never used (one loop device per partition instead).
///
/// With `autoclear` (the default) the kernel detaches the device when its last user goes away:
/// once this object is closed and nothing is mounted from it. That is what makes teardown
/// complete even if imagectl is killed: a mount holds the device, `umount` releases it.
public final class LoopDevice: @unchecked Sendable {
    // The descriptor is owned by this object; `close()`/`detach()` are the only mutations and
    // are guarded by `lock`, so the object may be handed between tasks.
    public let path: String
    public let number: Int
    private var fd: FileDescriptor?
    private let lock = NSLock()

    public struct Configuration: Sendable {
        public var offset: UInt64 = 0
        /// 0 means "to the end of the backing file".
        public var sizeLimit: UInt64 = 0
        public var readOnly = true
        public var autoclear = true
        public var directIO = false
        /// 0 keeps the default (512); otherwise the logical block size of the loop device.
        public var blockSize: UInt32 = 0
        public init(offset: UInt64 = 0, sizeLimit: UInt64 = 0, readOnly: Bool = true, autoclear: Bool = true) {
            self.offset = offset
            self.sizeLimit = sizeLimit
            self.readOnly = readOnly
            self.autoclear = autoclear
        }
    }

    /// How often to ask for another free device when a concurrent process configured the one we
    /// were given first (LOOP_CONFIGURE fails with EBUSY).
    static let attempts = 64

    private init(path: String, number: Int, fd: FileDescriptor) {
        self.path = path
        self.number = number
        self.fd = fd
    }

    deinit { try? fd?.close() }

    /// Attaches `backingPath` with `configuration` to a free loop device.
    public static func attach(_ backingPath: String, _ configuration: Configuration) throws -> LoopDevice {
        // Through UserFile: a FIFO swapped in for the image after it was dissected must not
        // block this open (LOOP_CONFIGURE would refuse it only afterwards).
        let backing = try UserFile.open(backingPath, accepting: .image,
                                        access: configuration.readOnly ? .readOnly : .readWrite).descriptor
        defer { try? backing.close() }  // the kernel keeps its own reference to the file
        return try attach(backingFD: backing.rawValue, name: backingPath, configuration)
    }

    /// Attaches an open backing file descriptor (a regular file or block device).
    public static func attach(backingFD: Int32, name: String, _ configuration: Configuration) throws -> LoopDevice {
        let control = try FileDescriptor.open("/dev/loop-control", .readWrite, options: [.closeOnExec])
        defer { try? control.close() }

        var config = loop_config()
        config.fd = UInt32(bitPattern: backingFD)
        config.block_size = configuration.blockSize
        config.info.lo_offset = configuration.offset
        config.info.lo_sizelimit = configuration.sizeLimit
        var flags: UInt32 = 0
        if configuration.readOnly { flags |= img_LO_FLAGS_READ_ONLY }
        if configuration.autoclear { flags |= img_LO_FLAGS_AUTOCLEAR }
        if configuration.directIO { flags |= img_LO_FLAGS_DIRECT_IO }
        config.info.lo_flags = flags
        // The backing name shows in losetup and /sys/block/loopN/loop/backing_file (the kernel
        // fills the latter from the fd itself; lo_file_name is informational).
        withUnsafeMutableBytes(of: &config.info.lo_file_name) { buffer in
            let bytes = Array(name.utf8.prefix(buffer.count - 1))
            buffer.copyBytes(from: bytes)
        }

        var lastError: SystemCallError?
        for _ in 0..<attempts {
            let number = try systemCall("ioctl(LOOP_CTL_GET_FREE)", path: "/dev/loop-control") {
                ioctl(control.rawValue, img_LOOP_CTL_GET_FREE)
            }
            let path = "/dev/loop\(number)"
            let device: FileDescriptor
            do {
                device = try FileDescriptor.open(FilePath(path), configuration.readOnly ? .readOnly : .readWrite,
                                                 options: [.closeOnExec])
            } catch let error as Errno where error == .noSuchFileOrDirectory {
                // devtmpfs has not created the node yet: ask again.
                lastError = SystemCallError("open", errno: error, path: path)
                continue
            }
            let result = ioctl(device.rawValue, img_LOOP_CONFIGURE, &config)
            if result == 0 { return LoopDevice(path: path, number: Int(number), fd: device) }
            let code = Errno(rawValue: img_errno())
            try? device.close()
            lastError = SystemCallError("ioctl(LOOP_CONFIGURE)", errno: code, path: path)
            // EBUSY: another process took this device between GET_FREE and CONFIGURE; retry.
            if code != .resourceBusy && code != .interrupted { throw lastError! }
        }
        throw lastError ?? SystemCallError("ioctl(LOOP_CONFIGURE)", errno: .resourceBusy, path: "/dev/loop-control")
    }

    /// Closes our descriptor. With autoclear, the device detaches now unless something (a mount)
    /// still uses it, and then when that goes away.
    public func close() {
        lock.lock(); defer { lock.unlock() }
        try? fd?.close()
        fd = nil
    }

    /// Detaches the device (LOOP_CLR_FD) and closes it. With a mount still on it, the kernel
    /// defers the detach to the last close (it turns on autoclear).
    public func detach() throws {
        lock.lock(); defer { lock.unlock() }
        guard let fd else { return }
        defer { try? fd.close(); self.fd = nil }
        try systemCall("ioctl(LOOP_CLR_FD)", path: path) { ioctl(fd.rawValue, img_LOOP_CLR_FD) }
    }

    /// The backing file of /dev/loopN from sysfs, or nil when the device is not attached.
    public static func backingFile(number: Int) -> String? {
        guard let text = try? String(contentsOfFile: "/sys/block/loop\(number)/loop/backing_file", encoding: .utf8) else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Numbers of the loop devices currently attached to `backingPath` (for tests and for
    /// `umount` to check nothing was left behind).
    public static func attached(to backingPath: String) -> [Int] {
        let resolved = URL(fileURLWithPath: backingPath).resolvingSymlinksInPath().path
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/sys/block") else { return [] }
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("loop"), let n = Int(name.dropFirst(4)), let file = backingFile(number: n) else { return nil }
            let path = file.hasSuffix(" (deleted)") ? String(file.dropLast(10)) : file
            return path == resolved || path == backingPath ? n : nil
        }.sorted()
    }
}

extension LoopDevice {
    /// Detaches /dev/loopN (LOOP_CLR_FD) when it is still attached to `backingPath`: used by
    /// `umount` for devices recorded at mount time. Returns false when it was already gone or now
    /// belongs to another file (then it is left alone).
    @discardableResult
    public static func detach(number: Int, ifBackedBy backingPath: String) throws -> Bool {
        guard let file = backingFile(number: number) else { return false }
        let resolved = URL(fileURLWithPath: backingPath).resolvingSymlinksInPath().path
        guard file == resolved || file == backingPath else { return false }
        let path = "/dev/loop\(number)"
        let fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        defer { try? fd.close() }
        if ioctl(fd.rawValue, img_LOOP_CLR_FD) != 0 {
            let code = Errno(rawValue: img_errno())
            if code == .noSuchAddressOrDevice { return false }  // ENXIO: already detached
            throw SystemCallError("ioctl(LOOP_CLR_FD)", errno: code, path: path)
        }
        return true
    }
}
