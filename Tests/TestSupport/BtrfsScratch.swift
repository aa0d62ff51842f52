import Foundation

/// A small btrfs filesystem for a test: a sparse file formatted with mkfs.btrfs and loop-mounted
/// in a temporary directory. Call `unmount()` in a `defer` (deinit unmounts too, as a fallback).
/// Needs root and btrfs: call `Privileged.require(.root, .loopDevices, .btrfs)` first.
public final class BtrfsScratch: @unchecked Sendable {
    // Immutable after init except `mounted`, which only the owning test touches.
    public let directory: TemporaryDirectory
    /// Where the filesystem is mounted.
    public let mountPoint: String
    public let backingFile: String
    private var mounted = false

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(size: String = "300M") throws {
        directory = try TemporaryDirectory(prefix: "imagectl-btrfs")
        backingFile = directory.appending("btrfs.img")
        mountPoint = directory.appending("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try Self.check(Tool.run("truncate", ["-s", size, backingFile]), "truncate")
        try Self.check(Tool.run("mkfs.btrfs", ["-q", "-f", backingFile]), "mkfs.btrfs")
        try Self.check(Tool.run("mount", ["-o", "loop", backingFile, mountPoint]), "mount")
        mounted = true
    }

    private static func check(_ result: Tool.Result, _ what: String) throws {
        if result.status != 0 { throw Failure(description: "\(what) failed: \(result.stderr)") }
    }

    /// `btrfs quota enable` on the filesystem.
    public func enableQuota() throws {
        try Self.check(Tool.run("btrfs", ["quota", "enable", mountPoint]), "btrfs quota enable")
    }

    /// A path inside the filesystem.
    public func appending(_ component: String) -> String { "\(mountPoint)/\(component)" }

    /// Unmounts (lazily if busy) and detaches the loop device (mount -o loop sets autoclear).
    public func unmount() {
        guard mounted else { return }
        mounted = false
        _ = try? Tool.run("chattr", ["-R", "-i", mountPoint])
        if (try? Tool.run("umount", [mountPoint]))?.status != 0 {
            _ = try? Tool.run("umount", ["-l", mountPoint])
        }
    }

    deinit {
        unmount()
    }
}
