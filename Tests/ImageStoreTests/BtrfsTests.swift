import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

/// The store on a loop-mounted btrfs: subvolumes, snapshots, the read-only flag, qgroup limits.
@Suite(.serialized) struct BtrfsTests {
    func btrfsStore() throws -> (BtrfsScratch, ImageStore) {
        try Privileged.require(.root, .loopDevices, .btrfs, .tool("btrfs"))
        let scratch = try BtrfsScratch()
        let store = try ImageStore(root: scratch.appending("machines"))
        return (scratch, store)
    }

    @Test func poolAndImportedTreesAreSubvolumes() async throws {
        let (scratch, store) = try btrfsStore()
        defer { scratch.unmount() }
        #expect(try Btrfs.isSubvolume(store.poolPath))
        #expect(try FileStatus.stat(store.poolPath).permissions == 0o700)
        let pending = try await store.beginImage(try ImageName(validating: "tree"), kind: .directoryTree, force: false)
        #expect(try Btrfs.isSubvolume(pending.temporaryPath))
        try "x\n".write(toFile: pending.temporaryPath + "/file", atomically: false, encoding: .utf8)
        let image = try pending.commit(readOnly: false, provenance: Provenance(source: "/src", sha256: nil, format: "directory"))
        #expect(image.type == .subvolume)
        #expect(try await store.list(includeHidden: false).map(\.type) == [.subvolume])
        // The creation time is the subvolume's otime.
        #expect(abs((image.created ?? .distantPast).timeIntervalSinceNow) < 120)
        // A discarded tree leaves no subvolume behind.
        let dropped = try await store.beginImage(try ImageName(validating: "dropped"), kind: .directoryTree, force: false)
        dropped.discard()
        #expect(try Btrfs.subvolumes(beneath: store.poolPath, postOrder: true).map { FileSystem.baseName($0) } == ["tree"])
    }

    @Test func cloneIsARecursiveSnapshot() async throws {
        let (scratch, store) = try btrfsStore()
        defer { scratch.unmount() }
        let source = store.poolPath + "/base"
        try Btrfs.createSubvolume(source)
        try FileManager.default.createDirectory(atPath: source + "/var/lib", withIntermediateDirectories: true)
        try Btrfs.createSubvolume(source + "/var/lib/nested")
        try "inner\n".write(toFile: source + "/var/lib/nested/data", atomically: false, encoding: .utf8)
        try "outer\n".write(toFile: source + "/file", atomically: false, encoding: .utf8)

        let clone = try await store.clone("base", to: try ImageName(validating: "copy"), readOnly: false)
        #expect(clone.type == .subvolume)
        #expect(try Btrfs.isSubvolume(clone.path + "/var/lib/nested"))
        #expect(try String(contentsOfFile: clone.path + "/var/lib/nested/data", encoding: .utf8) == "inner\n")
        // A snapshot, not a copy: btrfs records the source as its parent.
        let show = try Tool.run("btrfs", ["subvolume", "show", clone.path]).stdout
        let sourceShow = try Tool.run("btrfs", ["subvolume", "show", source]).stdout
        let sourceUUID = sourceShow.split(separator: "\n").first { $0.contains("\tUUID:") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces)
        let parentUUID = show.split(separator: "\n").first { $0.contains("Parent UUID:") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces)
        #expect(sourceUUID != nil && parentUUID == sourceUUID)
        // Writes to the clone do not reach the source.
        try "changed\n".write(toFile: clone.path + "/file", atomically: false, encoding: .utf8)
        #expect(try String(contentsOfFile: source + "/file", encoding: .utf8) == "outer\n")

        // Read-only clone: the top and the nested subvolume carry the ro flag.
        let frozen = try await store.clone("base", to: try ImageName(validating: "frozen"), readOnly: true)
        #expect(frozen.readOnly)
        #expect(try Btrfs.isReadOnly(frozen.path))
        #expect(try Btrfs.isReadOnly(frozen.path + "/var/lib/nested"))
        // ... and removing it removes everything, nested read-only subvolumes included.
        _ = try await store.remove(["frozen", "copy"])
        #expect(!FileManager.default.fileExists(atPath: frozen.path))
        #expect(try Btrfs.subvolumes(beneath: store.poolPath, postOrder: true).map { FileSystem.baseName($0) }.sorted() == ["base", "nested"])
    }

    @Test func plainDirectoryAndRawClonesUseReflinks() async throws {
        let (scratch, store) = try btrfsStore()
        defer { scratch.unmount() }
        let dir = store.poolPath + "/plain"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let data = Data(repeating: 0x5a, count: 4 << 20)
        try data.write(to: URL(fileURLWithPath: dir + "/blob"))
        try data.write(to: URL(fileURLWithPath: store.poolPath + "/disk.raw"))
        #expect(try await store.image(named: "plain").type == .directory)

        let clone = try await store.clone("plain", to: try ImageName(validating: "plain2"), readOnly: false)
        // On a btrfs pool the copy lands in a new subvolume.
        #expect(clone.type == .subvolume)
        let rawClone = try await store.clone("disk", to: try ImageName(validating: "disk2"), readOnly: false)
        #expect(try Tool.run("cmp", [store.poolPath + "/disk.raw", rawClone.path]).status == 0)
        // Reflinked: the extents are shared, so the filesystem reports them as such.
        let usage = try Tool.run("btrfs", ["filesystem", "du", "-s", "--raw", store.poolPath]).stdout
        let columns = usage.split(separator: "\n").last?.split(separator: " ", omittingEmptySubsequences: true) ?? []
        let shared = columns.count >= 3 ? UInt64(columns[2]) : nil
        #expect((shared ?? 0) >= UInt64(2 * data.count), "btrfs filesystem du: \(usage)")
        // And FileCopy says so.
        let statistics = try FileCopy.copyFile(store.poolPath + "/disk.raw", to: scratch.appending("third.raw"))
        #expect(statistics.reflinked == 1 && statistics.bytesCopied == 0)
    }

    @Test func readOnlyFlagOnSubvolumes() async throws {
        let (scratch, store) = try btrfsStore()
        defer { scratch.unmount() }
        try Btrfs.createSubvolume(store.poolPath + "/os")
        _ = try await store.setReadOnly("os", true)
        #expect(try Btrfs.isReadOnly(store.poolPath + "/os"))
        #expect(try Tool.run("btrfs", ["property", "get", "-ts", store.poolPath + "/os", "ro"]).stdout.contains("ro=true"))
        #expect(try await store.image(named: "os").readOnly)
        #expect(!FileManager.default.createFile(atPath: store.poolPath + "/os/new", contents: nil))
        // Rename works on a read-only subvolume and keeps the flag.
        let renamed = try await store.rename("os", to: try ImageName(validating: "os2"))
        #expect(renamed.readOnly)
        #expect(try Btrfs.isReadOnly(renamed.path))
        _ = try await store.setReadOnly("os2", false)
        #expect(try Btrfs.isReadOnly(renamed.path) == false)
        #expect(FileManager.default.createFile(atPath: renamed.path + "/new", contents: nil))
    }

    @Test func setLimitNeedsQuotaAndNeverEnablesIt() async throws {
        let (scratch, store) = try btrfsStore()
        defer { scratch.unmount() }
        try Btrfs.createSubvolume(store.poolPath + "/os")
        try FileManager.default.createDirectory(atPath: store.poolPath + "/plain", withIntermediateDirectories: true)

        await #expect(throws: ImageStore.Error.quotaNotEnabled("os", path: store.poolPath)) { try await store.setLimit("os", bytes: 100 << 20) }
        do {
            try await store.setLimit("os", bytes: 100 << 20)
        } catch {
            #expect("\(error)".contains("btrfs quota enable"))
        }
        // Quota is still off: imagectl did not switch it on.
        #expect(try Btrfs.isQuotaEnabled(store.poolPath) == false)
        await #expect(throws: ImageStore.Error.notASubvolume("plain")) { try await store.setLimit("plain", bytes: 1 << 20) }

        try scratch.enableQuota()
        try await store.setLimit("os", bytes: 100 << 20)
        #expect(try await store.details(named: "os").limit == 100 << 20)
        let qgroups = try Tool.run("btrfs", ["qgroup", "show", "-re", "--raw", store.poolPath]).stdout
        #expect(qgroups.contains("\(100 << 20)"), "btrfs qgroup show: \(qgroups)")
        // The limit is enforced: writing 200 MiB into the 100 MiB image fails.
        let write = try Tool.run("dd", ["if=/dev/zero", "of=\(store.poolPath)/os/fill", "bs=1M", "count=200", "conv=fsync"])
        #expect(write.status != 0)
        try? FileManager.default.removeItem(atPath: store.poolPath + "/os/fill")
        try await store.setLimit("os", bytes: nil)
        #expect(try await store.details(named: "os").limit == nil)
    }
}
