import Foundation
import Testing
import TestSupport

/// A full file system under the pool (issue 16): import-raw, import-tar and clone fail with one
/// `error:` line that names the cause, and leave the pool as it was, whether the space runs out
/// at the start, half-way or near the end.
@Suite("ENOSPC", .serialized)
struct NoSpaceCLITests {
    /// Bytes each verb writes into the pool.
    static let payload = 24 << 20

    /// Free space to leave: almost none, half the payload, just short of all of it.
    static let levels: [UInt64] = [64 << 10, UInt64(payload / 2), UInt64(payload - (1 << 20))]

    static func sh(_ command: String) throws {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw SmallFileSystem.Failure(description: "\(command): \(result.stderr)") }
    }

    /// Pool entries other than lock files (which a finished command may leave, as after success).
    static func entries(_ pool: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: pool).filter { !$0.hasSuffix(".lck") }.sorted()
    }

    @Test("a full file system: one error line naming 'No space left on device', the pool unchanged", arguments: ["import-raw", "import-tar", "clone"])
    func fullFileSystem(verb: String) throws {
        try Privileged.require(.root, .loopDevices, .tool("mkfs.ext4"), .tool("fallocate"), .tool("tar"))
        let inputs = try TemporaryDirectory(prefix: "imagectl-enospc-input")
        let fs = try SmallFileSystem(size: "96M")
        defer { fs.unmount() }
        let pool = fs.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        // Random bytes: nothing for compression or holes to save.
        let tree = inputs.appending("tree")
        try Self.sh("mkdir -p \(tree) && for i in $(seq 1 24); do head -c 1048576 /dev/urandom > \(tree)/f$i; done")
        let arguments: [String]
        switch verb {
        case "import-raw":
            try Self.sh("cat \(tree)/f* > \(inputs.appending("disk.raw"))")
            arguments = ["import-raw", inputs.appending("disk.raw"), "disk"]
        case "import-tar":
            try Self.sh("tar -C \(tree) -cf \(inputs.appending("tree.tar")) .")
            arguments = ["import-tar", inputs.appending("tree.tar"), "tree"]
        default:
            try Self.sh("cp -a \(tree) \(pool)/source")
            arguments = ["clone", "source", "copy"]
        }
        let before = try Self.entries(pool)
        for level in Self.levels {
            try fs.fill(leaving: level)
            let result = try Imagectl.run(arguments, root: pool)
            #expect(result.status == 1, "\(verb) with \(level) bytes free: status \(result.status) \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "\(verb) with \(level) bytes free: \(result.stderr)")
            #expect(result.stderr.contains("No space left on device"), "\(verb) with \(level) bytes free: \(result.stderr)")
            #expect(try Self.entries(pool) == before, "\(verb) with \(level) bytes free left something")
        }
        // With the space back the same command works: the failures did not leak space.
        try FileManager.default.removeItem(atPath: fs.appending("filler"))
        let result = try Imagectl.run(arguments, root: pool)
        #expect(result.status == 0, "\(result.stderr)")
    }
}
