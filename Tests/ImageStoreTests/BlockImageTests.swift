import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

/// A block-device image: a symlink in the pool to a loop device.
@Suite(.serialized) struct BlockImageTests {
    @Test func blockDeviceSymlinkIsAnImage() async throws {
        try Privileged.require(.root, .loopDevices, .tool("losetup"))
        let s = try ScratchStore()
        let backing = s.directory.appending("backing.img")
        _ = FileManager.default.createFile(atPath: backing, contents: Data("block data".utf8))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: backing))
        try handle.truncate(atOffset: 4 << 20)
        try handle.close()
        let setup = try Tool.run("losetup", ["--find", "--show", backing])
        try #require(setup.status == 0, "losetup: \(setup.stderr)")
        let device = setup.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tool.run("losetup", ["-d", device]) }
        try FileManager.default.createSymbolicLink(atPath: "\(s.pool)/dev-image", withDestinationPath: device)

        let image = try await s.store.image(named: "dev-image")
        #expect(image.type == .block)
        #expect(image.usage == 4 << 20)
        #expect(!image.readOnly)

        // Read-only is the kernel's flag on the device (BLKROSET), as blockdev --getro shows.
        _ = try await s.store.setReadOnly("dev-image", true)
        #expect(try Tool.run("blockdev", ["--getro", device]).stdout.hasPrefix("1"))
        #expect(try await s.store.image(named: "dev-image").readOnly)
        _ = try await s.store.setReadOnly("dev-image", false)
        #expect(try Tool.run("blockdev", ["--getro", device]).stdout.hasPrefix("0"))

        // export-raw reads the device; clone refuses clearly.
        let output = s.directory.appending("dev.raw.zst")
        try await s.store.exportRaw("dev-image", to: output)
        #expect(try Tool.run("sh", ["-c", "zstd -dc '\(output)' | cmp - '\(backing)'"]).status == 0)
        await #expect(throws: ImageStore.Error.self) { try await s.store.clone("dev-image", to: try ImageName(validating: "c"), readOnly: false) }

        // Removing the image removes the symlink, never the device.
        _ = try await s.store.remove(["dev-image"])
        #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/dev-image"))
        #expect(FileManager.default.fileExists(atPath: device))
    }
}
