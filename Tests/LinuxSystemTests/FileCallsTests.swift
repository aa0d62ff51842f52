import Foundation
import LinuxSystem
import Testing
import TestSupport

@Suite struct FileCallsTests {
    @Test func renameNoReplaceAndExchange() throws {
        let tmp = try TemporaryDirectory()
        let a = tmp.appending("a"), b = tmp.appending("b")
        try "A".write(toFile: a, atomically: false, encoding: .utf8)
        try "B".write(toFile: b, atomically: false, encoding: .utf8)
        #expect(throws: SystemCallError.self) { try Rename.rename(a, to: b, flags: .noReplace) }
        do {
            try Rename.rename(a, to: b, flags: .noReplace)
        } catch {
            #expect(error.errno == .fileExists)
            #expect(error.call == "renameat2")
        }
        try Rename.rename(a, to: b, flags: .exchange)
        #expect(try String(contentsOfFile: a, encoding: .utf8) == "B")
        #expect(try String(contentsOfFile: b, encoding: .utf8) == "A")
        try Rename.rename(a, to: tmp.appending("c"), flags: .noReplace)
        #expect(!FileManager.default.fileExists(atPath: a))
    }

    /// removeTree is `rm -rf --one-file-system`: it never descends into a mount point inside
    /// the tree (a bind mount included, which st_dev would not reveal), so what is mounted there
    /// survives, and it says EBUSY.
    @Test func removeTreeStopsAtMountPoints() throws {
        try Privileged.require(.root)
        let tmp = try TemporaryDirectory()
        let outside = tmp.appending("outside")
        let tree = tmp.appending("tree")
        try FileManager.default.createDirectory(atPath: outside + "/keep", withIntermediateDirectories: true)
        try "precious".write(toFile: outside + "/keep/file", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: tree + "/a/mnt", withIntermediateDirectories: true)
        try "gone".write(toFile: tree + "/a/plain", atomically: false, encoding: .utf8)
        try Mount.mount(source: outside, target: tree + "/a/mnt", type: nil, flags: [.bind])
        defer { try? Mount.unmount(tree + "/a/mnt", detach: true) }
        do {
            try FileSystem.removeTree(tree)
            Issue.record("removeTree went through a mount point")
        } catch {
            #expect(error.errno == .resourceBusy)
            #expect(error.path == tree + "/a/mnt")
        }
        #expect(try String(contentsOfFile: outside + "/keep/file", encoding: .utf8) == "precious")
        try Mount.unmount(tree + "/a/mnt")
        try FileSystem.removeTree(tree)
        #expect(!FileManager.default.fileExists(atPath: tree))
        #expect(FileManager.default.fileExists(atPath: outside + "/keep/file"))
    }

    /// readRegularFile: stops at the limit, and refuses a FIFO at once (O_NONBLOCK open, fstat on
    /// the descriptor) instead of blocking until a writer comes.
    @Test func readRegularFileStopsAtTheLimitAndRefusesAFIFO() throws {
        let tmp = try TemporaryDirectory()
        let file = tmp.appending("f"), fifo = tmp.appending("p")
        try "0123456789".write(toFile: file, atomically: false, encoding: .utf8)
        #expect(try readRegularFile(file, upTo: 4) == Array("0123".utf8))
        #expect(try readRegularFile(file, upTo: 100) == Array("0123456789".utf8))
        #expect(mkfifo(fifo, 0o600) == 0)
        do {
            _ = try readRegularFile(fifo, upTo: 100)
            Issue.record("a FIFO was read")
        } catch {
            #expect(error.errno == .invalidArgument)
        }
    }

    @Test func xattrSetGetListRemove() throws {
        let tmp = try TemporaryDirectory()
        let file = tmp.appending("f")
        try "x".write(toFile: file, atomically: false, encoding: .utf8)
        #expect(try Xattr.get(file, name: "user.missing") == nil)
        try Xattr.set(file, name: "user.one", string: "1")
        try Xattr.set(file, name: "user.bin", value: [0, 255, 7])
        #expect(try Xattr.getString(file, name: "user.one") == "1")
        #expect(try Xattr.get(file, name: "user.bin") == [0, 255, 7])
        #expect(Set(try Xattr.list(file)).isSuperset(of: ["user.one", "user.bin"]))
        // getfattr agrees.
        #expect(try Tool.run("getfattr", ["-n", "user.one", "--only-values", file]).stdout == "1")
        #expect(throws: SystemCallError.self) { try Xattr.set(file, name: "user.one", value: [1], mode: .create) }
        try Xattr.remove(file, name: "user.one")
        try Xattr.remove(file, name: "user.one")
        #expect(try Xattr.get(file, name: "user.one") == nil)
    }

    @Test func immutableFlag() throws {
        try Privileged.require(.root)
        let tmp = try TemporaryDirectory()
        let dir = tmp.appending("d")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try InodeFlags.setImmutable(dir, true)
        #expect(try InodeFlags.isImmutable(dir))
        #expect(try Tool.run("lsattr", ["-d", dir]).stdout.split(separator: " ").first?.contains("i") == true)
        #expect(!FileManager.default.createFile(atPath: dir + "/x", contents: nil))
        try InodeFlags.setImmutable(dir, false)
        #expect(FileManager.default.createFile(atPath: dir + "/x", contents: nil))
    }

    @Test func statusAndDiskUsage() throws {
        let tmp = try TemporaryDirectory()
        let file = tmp.appending("sparse")
        _ = FileManager.default.createFile(atPath: file, contents: Data(repeating: 1, count: 8192))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        try handle.truncate(atOffset: 100 << 20)
        try handle.close()
        let status = try FileStatus.lstat(file)
        #expect(status.kind == .regular && status.size == 100 << 20)
        #expect(status.allocatedBytes < 1 << 20)
        let du = try Tool.run("du", ["-s", "-B1", tmp.path]).stdout.split(separator: "\t").first.flatMap { UInt64($0) }
        #expect(FileSystem.diskUsage(tmp.path) == du)
        #expect(try FileStatus.lstatIfPresent(tmp.appending("none")) == nil)
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        #expect(try FileCopy.dataSegments(of: fd, size: status.size) == [0..<8192])
    }
}
