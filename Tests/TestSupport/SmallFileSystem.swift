import Foundation

/// A small ext4 file system for ENOSPC tests: a sparse file formatted without reserved blocks (root
/// would otherwise write into the 5% reserve and see ENOSPC later than a user) and loop-mounted in
/// a temporary directory. `fill(leaving:)` takes all but a given number of free bytes.
/// Needs root and loop devices: call `Privileged.require(.root, .loopDevices, .tool("mkfs.ext4"))`.
public final class SmallFileSystem: @unchecked Sendable {
    // Immutable after init except `mounted`, which only the owning test touches.
    public let directory: TemporaryDirectory
    public let mountPoint: String
    private var mounted = false

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public init(size: String = "96M") throws {
        directory = try TemporaryDirectory(prefix: "imagectl-small-fs")
        let backing = directory.appending("fs.img")
        mountPoint = directory.appending("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try Self.check(Tool.run("truncate", ["-s", size, backing]), "truncate")
        try Self.check(Tool.run("mkfs.ext4", ["-q", "-F", "-m", "0", "-O", "^has_journal", backing]), "mkfs.ext4")
        try Self.check(Tool.run("mount", ["-o", "loop", backing, mountPoint]), "mount")
        mounted = true
    }

    private static func check(_ result: Tool.Result, _ what: String) throws {
        if result.status != 0 { throw Failure(description: "\(what) failed: \(result.stderr)") }
    }

    public func appending(_ component: String) -> String { "\(mountPoint)/\(component)" }

    /// Bytes free for root (statvfs f_bfree), after flushing delayed allocations.
    public func freeBytes() throws -> UInt64 {
        try Self.check(Tool.run("sync", ["-f", mountPoint]), "sync")
        var info = statvfs()
        guard statvfs(mountPoint, &info) == 0 else { throw Failure(description: "statvfs \(mountPoint) failed") }
        return UInt64(info.f_bfree) * UInt64(info.f_frsize)
    }

    /// Allocates a filler file so that about `bytes` stay free (fallocate: real blocks, no data).
    /// Replaces an earlier filler.
    public func fill(leaving bytes: UInt64) throws {
        let filler = appending("filler")
        try? FileManager.default.removeItem(atPath: filler)
        // The filler's own extent blocks come out of the free space too: ask for less until it fits.
        var size = try freeBytes()
        guard size > bytes else { return }
        size -= bytes
        while true {
            let result = try Tool.run("fallocate", ["-l", "\(size)", filler])
            if result.status == 0 { return }
            guard size > 1 << 20 else { try Self.check(result, "fallocate") ; return }
            try? FileManager.default.removeItem(atPath: filler)
            size -= 256 << 10
        }
    }

    public func unmount() {
        guard mounted else { return }
        mounted = false
        if (try? Tool.run("umount", [mountPoint]))?.status != 0 {
            _ = try? Tool.run("umount", ["-l", mountPoint])
        }
    }

    deinit {
        unmount()
    }
}
