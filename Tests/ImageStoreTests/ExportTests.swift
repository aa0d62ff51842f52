import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

@Suite struct ExportTests {
    @Test(arguments: ["tree.tar", "tree.tar.xz", "tree.tar.gz", "tree.tar.zst", "tree.tar.bz2"])
    func exportTarRoundTripsThroughGNUTar(_ file: String) async throws {
        try Privileged.require(.root, .tool("tar"), .tool("setfacl"), .tool("setfattr"))
        let s = try ScratchStore()
        try makeRichTree(at: "\(s.pool)/tree")
        let output = s.directory.appending(file)
        try await s.store.exportTar("tree", to: output)

        // The suffix chose the compression (checked by magic bytes).
        let head = try Array(FileHandle(forReadingFrom: URL(fileURLWithPath: output)).read(upToCount: 6) ?? Data())
        switch file {
        case _ where file.hasSuffix(".xz"): #expect(head.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))
        case _ where file.hasSuffix(".gz"): #expect(head.starts(with: [0x1f, 0x8b]))
        case _ where file.hasSuffix(".zst"): #expect(head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]))
        case _ where file.hasSuffix(".bz2"): #expect(head.starts(with: Array("BZh".utf8)))
        default: #expect(try Tool.run("tar", ["-tf", output]).stdout.split(separator: "\n").first == "./")
        }

        let extracted = s.directory.appending("extracted")
        try FileManager.default.createDirectory(atPath: extracted, withIntermediateDirectories: true)
        let result = try Tool.run("tar", ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", "--same-permissions",
                                          "-xf", output, "-C", extracted])
        #expect(result.status == 0, "\(result.stderr)")
        try expectSameTree("\(s.pool)/tree", extracted)
        // Sparse files are stored sparse (the archive is far smaller than the 64 MiB file).
        if file == "tree.tar" { #expect(try FileStatus.stat(output).size < 1 << 20) }
        #expect(try FileSystem.entries(s.directory.path).filter { $0.hasPrefix(".#") }.isEmpty)
    }

    @Test(arguments: ["disk.raw", "disk.raw.xz", "disk.raw.gz", "disk.raw.zst", "disk.raw.bz2"])
    func exportRawRoundTrips(_ file: String) async throws {
        let s = try ScratchStore()
        let raw = try s.makeRawImage("disk", size: 32 << 20, data: String(repeating: "payload ", count: 1000))
        let output = s.directory.appending(file)
        try await s.store.exportRaw("disk", to: output)
        let plain: String
        switch file {
        case _ where file.hasSuffix(".xz"): plain = try decompress("xz", output, s)
        case _ where file.hasSuffix(".gz"): plain = try decompress("gzip", output, s)
        case _ where file.hasSuffix(".zst"): plain = try decompress("zstd", output, s)
        case _ where file.hasSuffix(".bz2"): plain = try decompress("bzip2", output, s)
        default:
            plain = output
            // Uncompressed export is a sparse copy.
            #expect(try allocated(output) <= 64 << 10)
        }
        #expect(try Tool.run("cmp", [raw, plain]).status == 0)
    }

    func decompress(_ tool: String, _ file: String, _ s: ScratchStore) throws -> String {
        let out = s.directory.appending("decompressed")
        let result = try Tool.run("sh", ["-c", "\(tool) -dc < '\(file)' > '\(out)'"])
        #expect(result.status == 0, "\(tool): \(result.stderr)")
        return out
    }

    @Test func exportRefusesWrongTypeAndExistingFile() async throws {
        let s = try ScratchStore()
        try s.makeRawImage("disk")
        try s.makeDirectoryImage("tree")
        await #expect(throws: ImageStore.Error.self) { try await s.store.exportTar("disk", to: s.directory.appending("x.tar")) }
        await #expect(throws: ImageStore.Error.self) { try await s.store.exportRaw("tree", to: s.directory.appending("x.raw")) }
        _ = FileManager.default.createFile(atPath: s.directory.appending("taken.tar"), contents: Data("mine".utf8))
        await #expect(throws: ImageStore.Error.self) { try await s.store.exportTar("tree", to: s.directory.appending("taken.tar")) }
        #expect(try String(contentsOfFile: s.directory.appending("taken.tar"), encoding: .utf8) == "mine")
        await #expect(throws: ImageStore.Error.noSuchImage("nope")) { try await s.store.exportTar("nope", to: s.directory.appending("n.tar")) }
        // Nothing half-written.
        #expect(try FileSystem.entries(s.directory.path).sorted() == ["pool", "taken.tar"])
    }

    @Test func compressionFromSuffix() {
        #expect(ExportCompression.fromSuffix("a.tar.xz") == .xz)
        #expect(ExportCompression.fromSuffix("a.TGZ") == .gzip)
        #expect(ExportCompression.fromSuffix("a.raw.zst") == .zstd)
        #expect(ExportCompression.fromSuffix("a.tar.bz2") == .bzip2)
        #expect(ExportCompression.fromSuffix("a.tar") == .uncompressed)
        #expect(ExportCompression.fromSuffix("a.xzz") == .uncompressed)
    }
}
