import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

/// Clone on a filesystem without reflinks or snapshots (ext4 here): the plain-copy path must keep
/// everything an OS tree carries.
@Suite struct CloneTests {
    @Test func copyKeepsOwnersModesXattrsACLsLinksDevicesAndHoles() async throws {
        try Privileged.require(.root, .tool("setfacl"), .tool("setfattr"))
        let s = try ScratchStore()
        let source = "\(s.pool)/src"
        try makeRichTree(at: source)
        _ = FileManager.default.createFile(atPath: "\(s.pool)/src.nspawn", contents: Data("[Exec]\nBoot=yes\n".utf8))
        try "\(String(repeating: "ef", count: 32))\n".write(toFile: "\(s.pool)/src.roothash", atomically: false, encoding: .utf8)

        let clone = try await s.store.clone("src", to: try ImageName(validating: "dst"), readOnly: false)
        #expect(clone.type == .directory && clone.path == "\(s.pool)/dst" && !clone.readOnly)
        try expectSameTree(source, clone.path)

        // Spot checks a user would make with the usual tools.
        let aclSource = try Tool.run("getfacl", ["-p", "-n", source + "/etc/passwd"]).stdout
        let aclClone = try Tool.run("getfacl", ["-p", "-n", clone.path + "/etc/passwd"]).stdout
        #expect(aclClone.replacingOccurrences(of: "/dst/", with: "/src/") == aclSource)
        #expect(aclSource.contains("user:1000:rwx"))
        let defaultACL = try Tool.run("getfacl", ["-p", "-n", "-d", clone.path + "/srv/shared"]).stdout
        #expect(defaultACL.contains("user:1000:r-x"))
        let tool = try FileStatus.lstat(clone.path + "/usr/bin/tool")
        #expect(tool.permissions == 0o4755 && tool.links == 3)
        #expect(try FileStatus.lstat(clone.path + "/etc/tool-link").inode == tool.inode)
        #expect(try FileStatus.lstat(clone.path + "/dev/null").kind == .characterDevice)
        #expect(try FileStatus.lstat(clone.path + "/dev/fifo").kind == .fifo)
        #expect(try FileSystem.symbolicLinkTarget(clone.path + "/etc/absolute") == "/etc/shadow")
        // Holes stay holes: 8 KiB of data in a 64 MiB file.
        let sparse = clone.path + "/srv/sparse.img"
        #expect(try FileStatus.lstat(sparse).size == 64 << 20)
        #expect(try allocated(sparse) <= 64 << 10)
        // Side files came along; the clone's own usage is reported.
        #expect(FileManager.default.fileExists(atPath: "\(s.pool)/dst.nspawn"))
        #expect(try await s.store.details(named: "dst").verity.rootHash == String(repeating: "ef", count: 32))
        #expect(try FileSystem.entries(s.pool).filter { $0.hasPrefix(".#") }.isEmpty)
    }

    @Test func cloneRawIsSparseAndCanBeReadOnly() async throws {
        let s = try ScratchStore()
        let raw = try s.makeRawImage("disk", size: 256 << 20)
        _ = try await s.store.setReadOnly("disk", true)
        let clone = try await s.store.clone("disk", to: try ImageName(validating: "copy"), readOnly: true)
        #expect(clone.type == .raw && clone.readOnly)
        #expect(try FileStatus.stat(clone.path).permissions & 0o222 == 0)
        #expect(try FileStatus.stat(clone.path).size == 256 << 20)
        #expect(try allocated(clone.path) <= 64 << 10)
        #expect(try Tool.run("cmp", [raw, clone.path]).status == 0)
        // A writable clone of a read-only raw image is writable.
        let writable = try await s.store.clone("disk", to: try ImageName(validating: "rw"), readOnly: false)
        #expect(!writable.readOnly)
    }

    @Test func cloneReadOnlyDirectoryIsImmutableAndSourceUntouched() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("base")
        _ = try await s.store.setReadOnly("base", true)
        let clone = try await s.store.clone("base", to: try ImageName(validating: "work"), readOnly: false)
        #expect(!clone.readOnly)
        #expect(try InodeFlags.isImmutable(clone.path) == false)
        let frozen = try await s.store.clone("base", to: try ImageName(validating: "frozen"), readOnly: true)
        #expect(frozen.readOnly)
        #expect(try InodeFlags.isImmutable(frozen.path))
        #expect(try await s.store.image(named: "base").readOnly)
    }

    @Test func cloneRefusesBadTargets() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("a")
        try s.makeRawImage("b")
        await #expect(throws: ImageStore.Error.exists("b")) { try await s.store.clone("a", to: try ImageName(validating: "b"), readOnly: false) }
        await #expect(throws: ImageStore.Error.noSuchImage("zz")) { try await s.store.clone("zz", to: try ImageName(validating: "c"), readOnly: false) }
        await #expect(throws: ImageStore.Error.sameName("a")) { try await s.store.clone("a", to: try ImageName(validating: "a"), readOnly: false) }
        #expect(try FileSystem.entries(s.pool).sorted() == ["a", "b.raw"])
    }

    @Test func copyFileFallsBackToSparseCopyAndReportsIt() throws {
        let tmp = try TemporaryDirectory()
        let source = tmp.appending("in")
        _ = FileManager.default.createFile(atPath: source, contents: Data("abc".utf8))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
        try handle.seek(toOffset: 10 << 20)
        try handle.write(contentsOf: Data("xyz".utf8))
        try handle.close()
        let statistics = try FileCopy.copyFile(source, to: tmp.appending("out"))
        #expect(statistics.files == 1)
        // ext4 here: no reflink, only the two data blocks are copied.
        if statistics.reflinked == 0 { #expect(statistics.bytesCopied <= 64 << 10) }
        #expect(try FileStatus.stat(tmp.appending("out")).size == (10 << 20) + 3)
        #expect(try Tool.run("cmp", [source, tmp.appending("out")]).status == 0)
        // The destination must not exist.
        #expect(throws: SystemCallError.self) { try FileCopy.copyFile(source, to: tmp.appending("out")) }
    }
}
