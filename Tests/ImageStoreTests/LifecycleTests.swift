import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

@Suite struct LifecycleTests {
    let sides = [".nspawn", ".roothash", ".roothash.p7s", ".usrhash", ".usrhash.p7s", ".verity", ".imagectl.json"]

    func addSideFiles(_ base: String) {
        for suffix in sides { _ = FileManager.default.createFile(atPath: base + suffix, contents: Data(suffix.utf8)) }
    }

    @Test func renameMovesImageAndSideFiles() async throws {
        let s = try ScratchStore()
        try s.makeRawImage("old")
        addSideFiles("\(s.pool)/old")
        let renamed = try await s.store.rename("old", to: try ImageName(validating: "new"))
        #expect(renamed.path == "\(s.pool)/new.raw")
        for suffix in sides {
            #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/old\(suffix)"))
            #expect(try String(contentsOfFile: "\(s.pool)/new\(suffix)", encoding: .utf8) == suffix)
        }
        #expect(try await s.store.list(includeHidden: true).map(\.name) == ["new"])
    }

    @Test func renameKeepsAReadOnlyDirectoryImmutable() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("ro")
        _ = try await s.store.setReadOnly("ro", true)
        let renamed = try await s.store.rename("ro", to: try ImageName(validating: "ro2"))
        #expect(renamed.readOnly)
        #expect(try InodeFlags.isImmutable("\(s.pool)/ro2"))
        #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/ro"))
    }

    @Test func renameRefusesExistingAndInvalid() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("a")
        try s.makeRawImage("b")
        await #expect(throws: ImageStore.Error.exists("b")) { try await s.store.rename("a", to: try ImageName(validating: "b")) }
        await #expect(throws: ImageStore.Error.noSuchImage("zz")) { try await s.store.rename("zz", to: try ImageName(validating: "c")) }
        await #expect(throws: ImageStore.Error.sameName("a")) { try await s.store.rename("a", to: try ImageName(validating: "a")) }
        #expect(try await s.store.list(includeHidden: false).map(\.name) == ["a", "b"])
    }

    @Test func removeSeveralWithSideFilesAndNothingOnUnknown() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("a")
        try s.makeRawImage("b")
        try s.makeDirectoryImage("c")
        addSideFiles("\(s.pool)/a")
        addSideFiles("\(s.pool)/b")
        // One unknown name: nothing is removed.
        await #expect(throws: ImageStore.Error.noSuchImage("nope")) { try await s.store.remove(["a", "nope"]) }
        #expect(try await s.store.list(includeHidden: false).count == 3)
        // A read-only image can be removed (as with machinectl).
        _ = try await s.store.setReadOnly("a", true)
        let removed = try await s.store.remove(["a", "b"])
        #expect(removed.map(\.name) == ["a", "b"])
        #expect(try FileSystem.entries(s.pool).sorted() == ["c"])
    }

    @Test func readOnlyPerType() async throws {
        let s = try ScratchStore()
        let raw = try s.makeRawImage("disk")
        let dir = try s.makeDirectoryImage("tree")
        try FileSystem.setPermissions(raw, 0o664)

        var image = try await s.store.setReadOnly("disk", true)
        #expect(image.readOnly)
        #expect(try FileStatus.stat(raw).permissions == 0o444)
        #expect(try await s.store.image(named: "disk").readOnly)
        image = try await s.store.setReadOnly("disk", false)
        #expect(try FileStatus.stat(raw).permissions == 0o644)
        #expect(try await s.store.image(named: "disk").readOnly == false)

        _ = try await s.store.setReadOnly("tree", true)
        #expect(try InodeFlags.isImmutable(dir))
        #expect(try await s.store.image(named: "tree").readOnly)
        #expect(throws: (any Error).self) { try "x".write(toFile: dir + "/new", atomically: false, encoding: .utf8) }
        _ = try await s.store.setReadOnly("tree", false)
        #expect(try InodeFlags.isImmutable(dir) == false)
        try "x".write(toFile: dir + "/new", atomically: false, encoding: .utf8)
    }

    @Test func limitNeedsBtrfs() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("tree")
        // /tmp here is not btrfs; where it is, a plain directory is still not a subvolume.
        await #expect(throws: ImageStore.Error.self) { try await s.store.setLimit("tree", bytes: 1 << 30) }
        do {
            try await s.store.setLimit("tree", bytes: 1 << 30)
        } catch let error as ImageStore.Error {
            #expect(error == .notOnBtrfs("tree") || error == .notASubvolume("tree"))
        }
    }

    @Test func cleanRemovesLeftoversButNothingLocked() async throws {
        let s = try ScratchStore()
        let fm = FileManager.default
        // Leftovers of a killed import: a tree, a raw file, a staged side file, a stale lock.
        try fm.createDirectory(atPath: "\(s.pool)/.#dead.0123456789abcdef.tmp/etc", withIntermediateDirectories: true)
        _ = fm.createFile(atPath: "\(s.pool)/.#dead.0123456789abcdef.tmp.roothash", contents: Data())
        _ = fm.createFile(atPath: "\(s.pool)/.#raw.fedcba9876543210.tmp", contents: Data())
        _ = fm.createFile(atPath: "\(s.pool)/.#stale.lck", contents: Data())
        // In use: the lock of "live" is held, so its temporary stays.
        try fm.createDirectory(atPath: "\(s.pool)/.#live.00112233445566aa.tmp", withIntermediateDirectories: true)
        let held = try #require(try FileLock.tryLock(path: "\(s.pool)/.#live.lck", kind: .exclusive))
        // Hidden images: one free, one locked by a user.
        try s.makeDirectoryImage(".old")
        try s.makeRawImage(".busy")
        let busyLock = try #require(try FileLock.tryLock(path: "\(s.pool)/.#.busy.lck", kind: .shared))
        try s.makeDirectoryImage("keep")

        let planned = try await s.store.clean(all: true, dryRun: true)
        #expect(Set(planned.map { FileSystem.baseName($0.path) }) == [
            ".#dead.0123456789abcdef.tmp", ".#dead.0123456789abcdef.tmp.roothash", ".#raw.fedcba9876543210.tmp", ".#stale.lck", ".old",
        ])
        #expect(fm.fileExists(atPath: "\(s.pool)/.#dead.0123456789abcdef.tmp"))  // dry run removed nothing

        let withoutAll = try await s.store.clean(all: false, dryRun: false)
        #expect(!withoutAll.contains { $0.kind == .hiddenImage })
        #expect(fm.fileExists(atPath: "\(s.pool)/.old"))
        let cleaned = try await s.store.clean(all: true, dryRun: false)
        #expect(cleaned.map(\.kind) == [.hiddenImage])
        #expect(try FileSystem.entries(s.pool).sorted() == [".#.busy.lck", ".#live.00112233445566aa.tmp", ".#live.lck", ".busy.raw", "keep"])
        withExtendedLifetime((held, busyLock)) {}
    }
}
