import Foundation
import Testing
import TestSupport

/// A full file system under the pool (issue 16): import-raw, import-tar, import-fs, pull-raw,
/// pull-tar and clone fail with one `error:` line that names the cause, and leave the pool as it
/// was, whether the space runs out at the start, half-way or near the end. A btrfs qgroup limit
/// on the pool's subvolume gives EDQUOT, named "Disk quota exceeded".
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

    @Test("a full file system: one error line naming 'No space left on device', the pool unchanged", arguments: ["import-raw", "import-tar", "import-fs", "pull-raw", "pull-tar", "clone"])
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
        case "import-fs":
            arguments = ["import-fs", tree, "tree"]
        // The pulls read file:// URLs (libcurl, as for http), so no server is needed.
        case "pull-raw":
            try Self.sh("cat \(tree)/f* > \(inputs.appending("disk.raw"))")
            arguments = ["pull-raw", "--verify=no", "file://\(inputs.appending("disk.raw"))", "disk"]
        case "pull-tar":
            try Self.sh("tar -C \(tree) -cf \(inputs.appending("tree.tar")) .")
            arguments = ["pull-tar", "--verify=no", "file://\(inputs.appending("tree.tar"))", "tree"]
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

    /// EDQUOT: the pool is a btrfs subvolume whose qgroup limit (8 MiB) is below what a raw
    /// import or pull writes into it (images that are subvolumes of their own are not counted in
    /// the pool's qgroup, so the raw verbs are the ones that meet the limit). Root is bound by
    /// qgroup limits, unlike ext4 quotas, which CAP_SYS_RESOURCE bypasses.
    @Test("a btrfs qgroup limit: one error line naming 'Disk quota exceeded', the pool unchanged", arguments: ["import-raw", "pull-raw"])
    func quotaExceeded(verb: String) throws {
        try Privileged.require(.root, .btrfs, .loopDevices, .tool("btrfs"))
        let inputs = try TemporaryDirectory(prefix: "imagectl-edquot-input")
        let fs = try BtrfsScratch()
        defer { fs.unmount() }
        let pool = fs.appending("pool")
        try Self.sh("btrfs -q subvolume create \(pool) && btrfs quota enable \(fs.mountPoint) && btrfs qgroup limit 8M \(pool)")
        try Self.sh("head -c \(Self.payload) /dev/urandom > \(inputs.appending("disk.raw"))")
        let arguments = verb == "import-raw"
            ? ["import-raw", inputs.appending("disk.raw"), "disk"]
            : ["pull-raw", "--verify=no", "file://\(inputs.appending("disk.raw"))", "disk"]
        let before = try Self.entries(pool)
        let result = try Imagectl.run(arguments, root: pool)
        #expect(result.status == 1, "status \(result.status) \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "\(result.stderr)")
        #expect(result.stderr.contains("Disk quota exceeded"), "\(result.stderr)")
        #expect(try Self.entries(pool) == before, "\(verb) over the quota left something")
        // With the limit lifted the same command works.
        try Self.sh("btrfs qgroup limit none \(pool)")
        let again = try Imagectl.run(arguments, root: pool)
        #expect(again.status == 0, "\(again.stderr)")
    }
}
