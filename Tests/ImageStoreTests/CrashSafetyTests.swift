import Foundation
@testable import ImageStore
import LinuxSystem
import Testing
import TestSupport

/// Store changes that a crash or a failure half-way must leave whole or gone (issue 16).
@Suite struct CrashSafetyTests {
    func names(_ s: ScratchStore) async throws -> [String] {
        try await s.store.list(includeHidden: true).map(\.name)
    }

    func dotEntries(_ s: ScratchStore) throws -> [String] {
        try FileSystem.entries(s.pool).filter { $0.hasPrefix(".#") && !$0.hasSuffix(".lck") }.sorted()
    }

    @Test("a remove whose deletion fails (an immutable file) leaves the name gone, not a half image; clean finishes it")
    func removeFailingHalfWay() async throws {
        try Privileged.require(.root, .tool("chattr"))
        let s = try ScratchStore()
        let tree = try s.makeDirectoryImage("tree")
        try "x\n".write(toFile: tree + "/etc/stuck", atomically: false, encoding: .utf8)
        try "[Exec]\n".write(toFile: "\(s.pool)/tree.nspawn", atomically: false, encoding: .utf8)
        try run("chattr", ["+i", tree + "/etc/stuck"])

        await #expect(throws: ImageStore.Error.self) { try await s.store.remove(["tree"]) }
        #expect(try await names(s).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(s.pool)/tree.nspawn"))
        let left = try dotEntries(s)
        #expect(left.count == 2 && left.allSatisfy { $0.hasPrefix(".#tree.") }, "\(left)")

        // clean retries the deletion and reports the same failure while the flag is set...
        await #expect(throws: SystemCallError.self) { try await s.store.clean(all: false, dryRun: false) }
        let doomed = try #require(left.first { $0.hasSuffix(".rm") })
        try run("chattr", ["-i", "\(s.pool)/\(doomed)/etc/stuck"])
        // ... and finishes once it is gone.
        let cleaned = try await s.store.clean(all: false, dryRun: false)
        #expect(Set(cleaned.map { FileSystem.baseName($0.path) }) == Set(left))
        #expect(try dotEntries(s).isEmpty)
    }

    @Test("clean finishes a remove killed after the rename: the image's side files go too, unless NAME exists again")
    func cleanFinishesKilledRemove() async throws {
        let s = try ScratchStore()
        let fm = FileManager.default
        // The state a kill -9 leaves between the rename of the image and that of its side files.
        try fm.createDirectory(atPath: "\(s.pool)/.#gone.0123456789abcdef.rm/etc", withIntermediateDirectories: true)
        _ = fm.createFile(atPath: "\(s.pool)/.#gone.0123456789abcdef.rm.roothash", contents: Data("ab".utf8))
        _ = fm.createFile(atPath: "\(s.pool)/gone.nspawn", contents: Data())
        _ = fm.createFile(atPath: "\(s.pool)/gone.imagectl.json", contents: Data("{}".utf8))
        // The same for "back", which was imported again since: its side files are its own now.
        _ = fm.createFile(atPath: "\(s.pool)/.#back.fedcba9876543210.rm", contents: Data())
        try s.makeRawImage("back")
        _ = fm.createFile(atPath: "\(s.pool)/back.nspawn", contents: Data())

        let planned = try await s.store.clean(all: false, dryRun: true)
        #expect(Set(planned.map { FileSystem.baseName($0.path) }) == [
            ".#gone.0123456789abcdef.rm", ".#gone.0123456789abcdef.rm.roothash", "gone.nspawn", "gone.imagectl.json",
            ".#back.fedcba9876543210.rm",
        ])
        #expect(fm.fileExists(atPath: "\(s.pool)/gone.nspawn"))
        _ = try await s.store.clean(all: false, dryRun: false)
        #expect(try FileSystem.entries(s.pool).filter { !$0.hasSuffix(".lck") }.sorted() == ["back.nspawn", "back.raw"])
    }

    @Test("a remove in progress (its lock held) is left alone by clean")
    func cleanSkipsRemovalInProgress() async throws {
        let s = try ScratchStore()
        _ = FileManager.default.createFile(atPath: "\(s.pool)/.#busy.0123456789abcdef.rm", contents: Data())
        let held = try #require(try FileLock.tryLock(path: "\(s.pool)/.#busy.lck", kind: .exclusive))
        #expect(try await s.store.clean(all: false, dryRun: false).isEmpty)
        #expect(try dotEntries(s) == [".#busy.0123456789abcdef.rm"])
        withExtendedLifetime(held) {}
    }

    @Test("remove of every image type: gone with its side files, nothing left under .#")
    func removeEachType() async throws {
        let s = try ScratchStore()
        try s.makeDirectoryImage("tree")
        try s.makeRawImage("disk")
        for base in ["tree", "disk"] {
            _ = FileManager.default.createFile(atPath: "\(s.pool)/\(base).roothash", contents: Data("00".utf8))
        }
        _ = try await s.store.setReadOnly("disk", true)
        let removed = try await s.store.remove(["tree", "disk"])
        #expect(removed.map(\.name) == ["tree", "disk"])
        #expect(try FileSystem.entries(s.pool).filter { !$0.hasSuffix(".lck") }.isEmpty)
    }

    // MARK: export

    @Test("export through O_TMPFILE: a failing export leaves nothing beside the output")
    func exportFailureLeavesNothing() async throws {
        let s = try ScratchStore()
        let output = s.directory.appending("out.raw")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try ImageStore.writeOutput(output) { fd in
                _ = try fd.writeAll(Array(repeating: 7, count: 4096))
                throw Boom()
            }
        }
        #expect(try FileSystem.entries(s.directory.path).sorted() == ["pool"])
        try ImageStore.writeOutput(output) { fd in _ = try fd.writeAll(Array("done".utf8)) }
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "done")
        #expect(try FileStatus.stat(output).permissions & 0o777 == 0o644)
        // Never replaces: the second export of the same path fails and keeps the first.
        #expect(throws: ImageStore.Error.self) {
            try ImageStore.writeOutput(output) { fd in _ = try fd.writeAll(Array("again".utf8)) }
        }
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "done")
    }

    @Test("without O_TMPFILE the next export of a path removes a killed export's .# file, not a running one's")
    func exportFallbackRemovesLeftovers() async throws {
        let s = try ScratchStore()
        let dir = s.directory.path
        let output = s.directory.appending("out.tar")
        // A killed export's leftover, a running export's file (locked), and unrelated files.
        _ = FileManager.default.createFile(atPath: "\(dir)/.#out.tar.0123456789abcdef", contents: Data(count: 100))
        _ = FileManager.default.createFile(atPath: "\(dir)/.#out.tar.00112233445566aa", contents: Data())
        let running = try #require(try FileLock.tryLock(path: "\(dir)/.#out.tar.00112233445566aa", kind: .exclusive, create: false))
        _ = FileManager.default.createFile(atPath: "\(dir)/.#other.tar.0123456789abcdef", contents: Data())
        _ = FileManager.default.createFile(atPath: "\(dir)/.#out.tar.notours", contents: Data())

        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try ImageStore.writeOutput(output, useAnonymousFile: false) { _ in throw Boom() }
        }
        try ImageStore.writeOutput(output, useAnonymousFile: false) { fd in _ = try fd.writeAll(Array("tar".utf8)) }
        #expect(try String(contentsOfFile: output, encoding: .utf8) == "tar")
        #expect(try FileSystem.entries(dir).sorted() == [
            ".#other.tar.0123456789abcdef", ".#out.tar.00112233445566aa", ".#out.tar.notours", "out.tar", "pool",
        ])
        withExtendedLifetime(running) {}
    }
}
