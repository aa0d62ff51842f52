import Foundation
import Glibc
@testable import LinuxSystem
import Testing
import TestSupport

/// `Reflink.privateClone`: the unnamed copy-on-write clone the userspace verity path mounts.
@Suite(.serialized) struct ReflinkTests {
    static let original = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })

    /// On btrfs the clone holds the source's bytes, keeps them when the source is overwritten
    /// afterwards, and has no name in the directory: none with O_TMPFILE, and the named
    /// fallback's name is gone before the call returns (nothing for a kill -9 to leave).
    @Test(arguments: [true, false])
    func cloneOnBtrfsIsPrivateAndNameless(unnamed: Bool) throws {
        try Privileged.require(.root, .loopDevices, .btrfs)
        let scratch = try BtrfsScratch()
        defer { scratch.unmount() }
        let source = scratch.appending("source")
        try Self.original.write(to: URL(fileURLWithPath: source))
        let input = open(source, O_RDONLY | O_CLOEXEC)
        try #require(input >= 0)
        defer { close(input) }

        let clone = try #require(try Reflink.privateClone(of: input, in: scratch.mountPoint, unnamed: unnamed))
        defer { try? clone.close() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.mountPoint) == ["source"])

        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: source))
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data(repeating: 0xa5, count: 8192))
        try handle.close()
        #expect(FileManager.default.contents(atPath: source) != Self.original)
        // Read through the descriptor's /proc link, as the verity check reads it.
        #expect(FileManager.default.contents(atPath: "/proc/self/fd/\(clone.rawValue)") == Self.original)
    }

    /// Where the file system cannot reflink (tmpfs): nil, and nothing left in the directory.
    @Test func noCloneWhereTheFileSystemCannotReflink() throws {
        try Privileged.require(.root)
        let dir = try TemporaryDirectory(prefix: "reflink-tmpfs")
        try Mount.mount(source: "tmpfs", target: dir.path, type: "tmpfs", flags: [], data: "size=8M")
        defer { try? Mount.unmount(dir.path, detach: true) }
        let source = dir.appending("source")
        try Self.original.write(to: URL(fileURLWithPath: source))
        let input = open(source, O_RDONLY | O_CLOEXEC)
        try #require(input >= 0)
        defer { close(input) }
        for unnamed in [true, false] {
            #expect(try Reflink.privateClone(of: input, in: dir.path, unnamed: unnamed) == nil)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["source"])
        }
    }

    /// A directory on a read-only mount: the failure names the call, it is not "cannot reflink".
    @Test func readOnlyDirectoryThrows() throws {
        try Privileged.require(.root)
        let dir = try TemporaryDirectory(prefix: "reflink-ro")
        try Mount.mount(source: "tmpfs", target: dir.path, type: "tmpfs", flags: [], data: "size=1M")
        defer { try? Mount.unmount(dir.path, detach: true) }
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir.appending("source")))
        try Mount.mount(source: dir.path, target: dir.path, type: nil, flags: [.remount, .bind, .readOnly])
        let input = open(dir.appending("source"), O_RDONLY | O_CLOEXEC)
        try #require(input >= 0)
        defer { close(input) }
        #expect {
            _ = try Reflink.privateClone(of: input, in: dir.path)
        } throws: { error in
            (error as? SystemCallError)?.call == "open(O_TMPFILE)" && (error as? SystemCallError)?.errno == .readOnlyFileSystem
        }
    }
}
