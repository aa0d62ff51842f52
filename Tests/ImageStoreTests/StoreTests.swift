import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

@Suite struct StoreTests {
    @Test func explicitRootIsCreatedWithMode0700() throws {
        let tmp = try TemporaryDirectory()
        let root = tmp.appending("a/b/pool")
        let store = try ImageStore(root: root)
        #expect(store.poolPath == root)
        let status = try FileStatus.stat(root)
        #expect(status.kind == .directory)
        #expect(status.permissions == 0o700)
        #expect(store.searchPath == [ImageStore.SearchDirectory(path: root, vendor: false)])
    }

    @Test func rootThatIsAFileIsRefused() throws {
        let tmp = try TemporaryDirectory()
        _ = FileManager.default.createFile(atPath: tmp.appending("file"), contents: Data())
        #expect(throws: ImageStore.Error.notADirectory(tmp.appending("file"))) { try ImageStore(root: tmp.appending("file")) }
    }

    @Test func defaultStoreUsesTheSystemSearchPath() throws {
        let store = try ImageStore(root: nil)
        #expect(store.poolPath == "/var/lib/machines")
        #expect(store.searchPath.map(\.path) == ["/etc/machines", "/run/machines", "/var/lib/machines",
                                                  "/var/lib/container", "/usr/local/lib/machines", "/usr/lib/machines"])
        #expect(store.searchPath.filter(\.vendor).map(\.path) == ["/usr/local/lib/machines", "/usr/lib/machines"])
    }

    @Test func listFindsEachTypeAndIgnoresSideAndTemporaryFiles() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("web")
        try s.makeRawImage("disk")
        try s.makeDirectoryImage(".hidden")
        // Not images: side files, metadata, temporaries, locks, a plain file, a bad name.
        for junk in ["web.nspawn", "disk.roothash", "web.imagectl.json", "notes.txt", ".#web.lck"] {
            _ = FileManager.default.createFile(atPath: "\(s.pool)/\(junk)", contents: Data("x".utf8))
        }
        try FileManager.default.createDirectory(atPath: "\(s.pool)/.#web.0123456789abcdef.tmp", withIntermediateDirectories: true)
        // A symlink to a directory elsewhere is an image too (as /etc/machines holds them).
        let elsewhere = s.directory.appending("elsewhere")
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(s.pool)/linked", withDestinationPath: elsewhere)

        let visible = try await s.store.list(includeHidden: false)
        #expect(visible.map(\.name) == ["disk", "linked", "web"])
        #expect(visible.map(\.type) == [.raw, .directory, .directory])
        #expect(visible.first?.path == "\(s.pool)/disk.raw")
        let all = try await s.store.list(includeHidden: true)
        #expect(all.map(\.name) == [".hidden", "disk", "linked", "web"])
        #expect(all.first?.hidden == true)
    }

    @Test func listReportsUsageTimesAndReadOnly() async throws {
        let s = try ScratchStore()
        let dir = try s.makeDirectoryImage("web")
        let raw = try s.makeRawImage("disk", size: 64 << 20)
        let before = Date().addingTimeInterval(-5)
        let images = try await s.store.list(includeHidden: false)
        let disk = try #require(images.first { $0.name == "disk" })
        let web = try #require(images.first { $0.name == "web" })
        // Usage is allocated space, like du -s -B1, not the 64 MiB apparent size.
        let duRaw = try Tool.run("du", ["-s", "-B1", raw]).stdout.split(separator: "\t").first.flatMap { UInt64($0) }
        let duDir = try Tool.run("du", ["-s", "-B1", dir]).stdout.split(separator: "\t").first.flatMap { UInt64($0) }
        #expect(disk.usage == duRaw)
        #expect(web.usage == duDir)
        #expect((disk.usage ?? 0) < 1 << 20)
        #expect(disk.readOnly == false)
        #expect((disk.modified ?? .distantPast) > before)
        if let created = disk.created { #expect(created > before) }
    }

    @Test func imageLookupAndUnknownName() async throws {
        let s = try ScratchStore()
        try s.makeRawImage("disk")
        let image = try await s.store.image(named: "disk")
        #expect(image.type == .raw)
        #expect(image.sideFileBase == "\(s.pool)/disk")
        await #expect(throws: ImageStore.Error.noSuchImage("nope")) { try await s.store.image(named: "nope") }
        await #expect(throws: ImageName.Error.self) { try await s.store.image(named: "../etc") }
        #expect(ImageStore.Error.noSuchImage("nope").description == "no image named 'nope'")
    }

    @Test func searchPathFirstMatchWinsAndVendorImagesAreReadOnly() async throws {
        let tmp = try TemporaryDirectory()
        let etc = tmp.appending("etc-machines"), pool = tmp.appending("pool"), vendor = tmp.appending("usr-lib-machines")
        for dir in [etc, pool, vendor] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let store = try ImageStore(pool: pool, searchPath: [
            .init(path: etc, vendor: false), .init(path: pool, vendor: false), .init(path: vendor, vendor: true),
        ], createPool: true)
        // "both" exists in the pool and in the vendor directory: the pool's wins.
        try FileManager.default.createDirectory(atPath: pool + "/both/etc", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: vendor + "/both", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: vendor + "/base/etc", withIntermediateDirectories: true)
        try "vendor\n".write(toFile: vendor + "/base/etc/os-release", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: etc + "/linked", withDestinationPath: vendor + "/base")

        let images = try await store.list(includeHidden: false)
        #expect(images.map(\.name) == ["base", "both", "linked"])
        let both = try await store.image(named: "both")
        #expect(both.path == pool + "/both")
        #expect(both.vendor == false)
        let base = try await store.image(named: "base")
        #expect(base.vendor && base.readOnly)

        // Vendor images cannot be changed, only cloned.
        await #expect(throws: ImageStore.Error.vendorImage("base", path: vendor + "/base")) { try await store.remove(["base"]) }
        await #expect(throws: ImageStore.Error.self) { try await store.rename("base", to: try ImageName(validating: "b2")) }
        await #expect(throws: ImageStore.Error.self) { try await store.setReadOnly("base", false) }
        let copy = try await store.clone("base", to: try ImageName(validating: "mine"), readOnly: false)
        #expect(copy.path == pool + "/mine")
        #expect(!copy.vendor && !copy.readOnly)
        #expect(try String(contentsOfFile: pool + "/mine/etc/os-release", encoding: .utf8) == "vendor\n")
        // A new image may not shadow one elsewhere on the path.
        await #expect(throws: ImageStore.Error.exists("base")) {
            try await store.beginImage(try ImageName(validating: "base"), kind: .rawFile, force: false)
        }
    }

    @Test func showReportsVeritySideFilesAndLock() async throws {
        let s = try ScratchStore()
        let raw = try s.makeRawImage("disk")
        let hash = String(repeating: "ab", count: 32)
        try "\(hash)\n".write(toFile: "\(s.pool)/disk.roothash", atomically: false, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: "\(s.pool)/disk.roothash.p7s", contents: Data([0x30]))
        _ = FileManager.default.createFile(atPath: "\(s.pool)/disk.verity", contents: Data([0]))
        _ = FileManager.default.createFile(atPath: "\(s.pool)/disk.nspawn", contents: Data("[Exec]\n".utf8))
        var details = try await s.store.details(named: "disk")
        #expect(details.verity.rootHash == hash)
        #expect(details.verity.rootHashSource == "\(s.pool)/disk.roothash")
        #expect(details.verity.rootHashSignature == "\(s.pool)/disk.roothash.p7s")
        #expect(details.verity.hashTree == "\(s.pool)/disk.verity")
        #expect(Set(details.sideFiles) == Set(["nspawn", "roothash", "roothash.p7s", "verity"].map { "\(s.pool)/disk.\($0)" }))
        #expect(details.locked == false)
        #expect(details.lockHolders.isEmpty)
        #expect(details.limit == nil)

        // The xattr wins over the sidecar, as in systemd.
        let other = String(repeating: "cd", count: 32)
        try Xattr.set(raw, name: "user.verity.roothash", string: other)
        details = try await s.store.details(named: "disk")
        #expect(details.verity.rootHash == other)
        #expect(details.verity.rootHashSource == "xattr user.verity.roothash")

        // A garbage sidecar is not reported as a hash.
        try Xattr.remove(raw, name: "user.verity.roothash")
        try "not hex".write(toFile: "\(s.pool)/disk.roothash", atomically: false, encoding: .utf8)
        details = try await s.store.details(named: "disk")
        #expect(details.verity.rootHash == nil)

        // JSON: image fields at the top level plus the details.
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        let json = try JSONSerialization.jsonObject(with: encoder.encode(details)) as? [String: Any]
        #expect(json?["name"] as? String == "disk")
        #expect(json?["type"] as? String == "raw")
        #expect(json?["sideFiles"] is [String])
        #expect(json?["locked"] as? Bool == false)
    }
}

@Suite struct SymlinkedImageTests {
    /// An /etc/machines-style entry: a symlink to a tree elsewhere. Reads go to the target; the
    /// symlink itself is what rename and remove act on.
    @Test func symlinkedDirectoryImage() async throws {
        let s = try ScratchStore()
        let target = s.directory.appending("real-tree")
        try FileManager.default.createDirectory(atPath: target + "/etc", withIntermediateDirectories: true)
        try String(repeating: "x", count: 100_000).write(toFile: target + "/etc/big", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(s.pool)/linked", withDestinationPath: target)

        let image = try await s.store.image(named: "linked")
        #expect(image.type == .directory && image.targetPath == target)
        let du = try Tool.run("du", ["-s", "-B1", target]).stdout.split(separator: "\t").first.flatMap { UInt64($0) }
        #expect(image.usage == du)

        let clone = try await s.store.clone("linked", to: try ImageName(validating: "copy"), readOnly: false)
        #expect(try FileStatus.lstat(clone.path).kind == .directory)
        #expect(try FileStatus.stat(clone.path + "/etc/big").size == 100_000)

        try await s.store.exportTar("linked", to: s.directory.appending("linked.tar"))
        #expect(try Tool.run("tar", ["-tf", s.directory.appending("linked.tar")]).stdout.contains("./etc/big"))

        _ = try await s.store.setReadOnly("linked", true)
        #expect(try InodeFlags.isImmutable(target))
        #expect(try await s.store.image(named: "linked").readOnly)
        _ = try await s.store.setReadOnly("linked", false)

        _ = try await s.store.remove(["linked"])
        #expect(!FileSystem.exists("\(s.pool)/linked"))
        #expect(FileManager.default.fileExists(atPath: target + "/etc/big"))
    }
}
