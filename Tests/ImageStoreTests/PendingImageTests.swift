import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

@Suite struct PendingImageTests {
    let provenance = Provenance(source: "https://example.com/disk.raw.xz", sha256: String(repeating: "0", count: 64), format: "raw+xz",
                                importedAt: Date(timeIntervalSince1970: 1_700_000_000))

    @Test func rawFileLifecycle() async throws {
        let s = try ScratchStore()
        let pending = try await s.store.beginImage(try ImageName(validating: "disk"), kind: .rawFile, force: false)
        #expect(FileSystem.baseName(pending.temporaryPath).hasPrefix(".#disk."))
        #expect(FileSystem.parentDirectory(pending.temporaryPath) == s.pool)
        let status = try FileStatus.lstat(pending.temporaryPath)
        #expect(status.kind == .regular && status.size == 0 && status.permissions == 0o644)
        // Not visible while pending, and the name is locked.
        #expect(try await s.store.list(includeHidden: true).isEmpty)
        #expect(try FileLock.isLocked(path: "\(s.pool)/.#disk.lck"))
        await #expect(throws: ImageStore.Error.busy("disk")) {
            try await s.store.beginImage(try ImageName(validating: "disk"), kind: .rawFile, force: true)
        }

        try Data("bytes".utf8).write(to: URL(fileURLWithPath: pending.temporaryPath))
        try pending.addSideFile(suffix: ".roothash", contents: Array("ab\n".utf8))
        let image = try pending.commit(readOnly: false, provenance: provenance)
        #expect(image.name == "disk" && image.type == .raw && image.path == "\(s.pool)/disk.raw")
        #expect(image.provenance == provenance)
        #expect(FileManager.default.fileExists(atPath: "\(s.pool)/disk.roothash"))
        #expect(FileManager.default.fileExists(atPath: "\(s.pool)/disk.imagectl.json"))
        #expect(try Xattr.getString(image.path, name: "user.source_url") == provenance.source)
        // No temporaries, lock released (and its file removed).
        #expect(try FileSystem.entries(s.pool).filter { $0.hasPrefix(".#") }.isEmpty)
        #expect(try await s.store.image(named: "disk").provenance == provenance)
        // Committing twice is refused; discard after commit changes nothing.
        #expect(throws: ImageStore.Error.alreadyFinished("disk")) { try pending.commit(readOnly: false, provenance: provenance) }
        pending.discard()
        #expect(FileManager.default.fileExists(atPath: image.path))
    }

    @Test func directoryTreeCommittedReadOnly() async throws {
        let s = try ScratchStore()
        let pending = try await s.store.beginImage(try ImageName(validating: "tree"), kind: .directoryTree, force: false)
        let status = try FileStatus.lstat(pending.temporaryPath)
        #expect(status.kind == .directory && status.permissions == 0o755)
        try FileManager.default.createDirectory(atPath: pending.temporaryPath + "/etc", withIntermediateDirectories: true)
        let image = try pending.commit(readOnly: true, provenance: Provenance(source: "/srv/tree", sha256: nil, format: "directory"))
        #expect(image.type == .directory && image.readOnly)
        #expect(try InodeFlags.isImmutable(image.path))
        // Immutable: even root cannot add a file.
        #expect(!FileManager.default.createFile(atPath: image.path + "/new", contents: nil))
        #expect(try await s.store.list(includeHidden: false).first?.readOnly == true)
    }

    @Test func existingNameNeedsForceAndForceReplacesWithSideFiles() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("os")
        _ = FileManager.default.createFile(atPath: "\(s.pool)/os.nspawn", contents: Data("old".utf8))
        await #expect(throws: ImageStore.Error.exists("os")) {
            try await s.store.beginImage(try ImageName(validating: "os"), kind: .directoryTree, force: false)
        }
        // Replace a directory by a raw image: the old tree and its side files go.
        let pending = try await s.store.beginImage(try ImageName(validating: "os"), kind: .rawFile, force: true)
        let image = try pending.commit(readOnly: false, provenance: provenance)
        #expect(image.type == .raw)
        #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/os"))
        #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/os.nspawn"))
        // Replace a read-only raw image by another (same file name: atomic exchange).
        _ = try await s.store.setReadOnly("os", true)
        let again = try await s.store.beginImage(try ImageName(validating: "os"), kind: .rawFile, force: true)
        try Data("new".utf8).write(to: URL(fileURLWithPath: again.temporaryPath))
        let replaced = try again.commit(readOnly: false, provenance: provenance)
        #expect(try String(contentsOfFile: replaced.path, encoding: .utf8) == "new")
        #expect(try FileSystem.entries(s.pool).sorted() == ["os.imagectl.json", "os.raw"])
    }

    @Test func discardAndDeinitRemoveTheTemporary() async throws {
        let s = try ScratchStore()
        let pending = try await s.store.beginImage(try ImageName(validating: "gone"), kind: .directoryTree, force: false)
        try FileManager.default.createDirectory(atPath: pending.temporaryPath + "/a/b", withIntermediateDirectories: true)
        pending.discard()
        pending.discard()
        #expect(!FileManager.default.fileExists(atPath: pending.temporaryPath))
        #expect(try FileSystem.entries(s.pool).isEmpty)
        // Dropping an uncommitted image discards it too.
        var temporary = ""
        do {
            let dropped = try await s.store.beginImage(try ImageName(validating: "dropped"), kind: .rawFile, force: false)
            temporary = dropped.temporaryPath
        }
        #expect(!temporary.isEmpty && !FileManager.default.fileExists(atPath: temporary))
        // The name is free again.
        let next = try await s.store.beginImage(try ImageName(validating: "dropped"), kind: .rawFile, force: false)
        next.discard()
    }

    @Test func temporaryNamesBelongToTheirImage() async throws {
        let s = try ScratchStore()
        let pending = try await s.store.beginImage(try ImageName(validating: "a.raw.b"), kind: .rawFile, force: false)
        defer { pending.discard() }
        let base = FileSystem.baseName(pending.temporaryPath)
        #expect(base.hasPrefix(".#a.raw.b."))
        #expect(base.hasSuffix(".tmp"))
        // clean sees the pending image's lock and leaves its temporary alone.
        let cleaned = try await s.store.clean(all: true, dryRun: false)
        #expect(cleaned.isEmpty)
        #expect(FileManager.default.fileExists(atPath: pending.temporaryPath))
    }
}

@Suite struct ForceReplaceTests {
    @Test func forceReplacingASymlinkedImageLeavesItsTargetAlone() async throws {
        let s = try ScratchStore()
        let target = s.directory.appending("elsewhere")
        try FileManager.default.createDirectory(atPath: target + "/etc", withIntermediateDirectories: true)
        try InodeFlags.setImmutable(target, true)
        defer { try? InodeFlags.setImmutable(target, false) }
        try FileManager.default.createSymbolicLink(atPath: "\(s.pool)/os", withDestinationPath: target)
        let pending = try await s.store.beginImage(try ImageName(validating: "os"), kind: .directoryTree, force: true)
        let image = try pending.commit(readOnly: false, provenance: Provenance(source: "/x", sha256: nil, format: "directory"))
        #expect(try FileStatus.lstat(image.path).kind == .directory)
        // The link was replaced; the tree it pointed to is untouched and still immutable.
        #expect(FileManager.default.fileExists(atPath: target + "/etc"))
        #expect(try InodeFlags.isImmutable(target))
    }
}
