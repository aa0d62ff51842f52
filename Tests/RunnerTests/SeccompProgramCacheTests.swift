import Foundation
import Testing
import TestSupport
@testable import Runner

/// The compiled-filter cache: a stored program comes back only for its exact key, and a file
/// that is damaged, foreign-keyed or writable by others is never used (the filter is rebuilt).
@Suite("Seccomp program cache")
struct SeccompProgramCacheTests {
    static let allowed: Set<String> = ["read", "write", "exit_group"]

    static func programs() throws -> [UInt8] {
        try SeccompFilter.argumentChecks() + SeccompFilter.allowList(allowed)
    }

    @Test func storedProgramsComeBackForTheSameKeyOnly() throws {
        let scratch = try TemporaryDirectory(prefix: "seccomp-cache")
        let directory = scratch.appending("seccomp")
        let programs = try Self.programs()
        let key = SeccompProgramCache.key(allowed: Self.allowed)
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
        SeccompProgramCache.store(programs, key: key, directory: directory)
        #expect(SeccompProgramCache.load(key: key, directory: directory) == programs)
        // Another allowed set is another key: not served from this file.
        let other = SeccompProgramCache.key(allowed: Self.allowed.union(["kexec_load"]))
        #expect(SeccompProgramCache.load(key: other, directory: directory) == nil)
        let mode = try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int
        #expect(mode == 0o700)
    }

    @Test func theKeyNamesLibseccompAndThisExecutable() {
        let key = SeccompProgramCache.key(allowed: Self.allowed)
        #expect(key.contains("libseccomp "))
        #expect(key.contains("exe "))
        #expect(key.hasSuffix("exit_group read write\n"))
    }

    @Test func damagedOrForeignFilesAreNotUsed() throws {
        let scratch = try TemporaryDirectory(prefix: "seccomp-cache")
        let directory = scratch.appending("seccomp")
        let programs = try Self.programs()
        let key = SeccompProgramCache.key(allowed: Self.allowed)
        SeccompProgramCache.store(programs, key: key, directory: directory)
        let path = directory + "/" + SeccompProgramCache.fileName(key)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))

        // Truncated in the middle of the second program.
        try good.prefix(good.count - 5).write(to: URL(fileURLWithPath: path))
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
        // Trailing bytes after the second program.
        try (good + Data([0, 0, 0, 0])).write(to: URL(fileURLWithPath: path))
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
        // The same programs under a different key text (a hash collision or a stale file).
        var foreign = good
        foreign[4] ^= 0x20
        try foreign.write(to: URL(fileURLWithPath: path))
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
        // Intact, but writable by the group: not trusted.
        try good.write(to: URL(fileURLWithPath: path))
        #expect(chmod(path, 0o620) == 0)
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
        #expect(chmod(path, 0o600) == 0)
        #expect(SeccompProgramCache.load(key: key, directory: directory) == programs)
        // A symlink in its place is not followed.
        #expect(unlink(path) == 0)
        let elsewhere = scratch.appending("elsewhere.bpf")
        try good.write(to: URL(fileURLWithPath: elsewhere))
        #expect(symlink(elsewhere, path) == 0)
        #expect(SeccompProgramCache.load(key: key, directory: directory) == nil)
    }

    @Test func wellFormedMeansTwoBoundedPrograms() {
        func program(_ count: UInt32) -> [UInt8] {
            withUnsafeBytes(of: count.littleEndian) { Array($0) } + [UInt8](repeating: 0, count: Int(count) * 8)
        }
        #expect(SeccompProgramCache.isWellFormed(program(1) + program(3)))
        #expect(!SeccompProgramCache.isWellFormed(program(1)))
        #expect(!SeccompProgramCache.isWellFormed(program(0) + program(1)))
        #expect(!SeccompProgramCache.isWellFormed(program(4097) + program(1)))
        #expect(!SeccompProgramCache.isWellFormed([]))
    }
}
