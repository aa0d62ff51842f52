import Foundation
import Testing
import TestSupport

/// Which verity path `mount`, `run` and `verify` take, and what each promises. Without
/// device-mapper (this machine) the tree is checked in userspace before mounting: on a file
/// system that can reflink (btrfs here) the check and the mount use a private copy, so a later
/// write to the image does not reach the mount; elsewhere (ext4, tmpfs) the output says that the
/// check was one-time, and indeed a later write shows through.
@Suite("verity: the path taken, and the window between check and use", .serialized)
struct VerityPathCLITests {
    static let marker = Array("ID=imagectl-test".utf8)
    static let replacement = Array("ID=TAMPERED-0000".utf8)

    static func rootHash() throws -> String {
        try String(contentsOfFile: try #require(Fixtures.path("gpt-verity.roothash.txt")), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Copies gpt-verity.raw into `directory` under a unique name (a machine of `run` is named
    /// after it).
    static func copyImage(into directory: String) throws -> String {
        let image = "\(directory)/gv-\(UUID().uuidString.prefix(8).lowercased()).raw"
        let r = try Tool.run("cp", ["--sparse=always", try #require(Fixtures.path("gpt-verity.raw")), image])
        try #require(r.status == 0, "cp: \(r.stderr)")
        return image
    }

    /// Rewrites, in the image file, every copy of os-release's ID= line (the files' data blocks
    /// in the root partition: /etc/os-release and /usr/lib/os-release) and flushes it to disk.
    /// Returns how many were rewritten.
    static func tamperOSRelease(_ image: String) throws -> Int {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: image)))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: image))
        var count = 0
        var i = 0
        while i + marker.count <= bytes.count {
            if bytes[i] == marker[0], Array(bytes[i..<(i + marker.count)]) == marker {
                try handle.seek(toOffset: UInt64(i))
                try handle.write(contentsOf: Data(replacement))
                count += 1
                i += marker.count
            } else {
                i += 1
            }
        }
        try handle.synchronize()
        try handle.close()
        return count
    }

    /// So that the next read of a file in the mount goes to its block device again.
    static func dropCaches() throws {
        try "3\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
    }

    /// `losetup -a` lines that speak of files below `directory` (the private copy shows as
    /// "DIR/#INODE (deleted)").
    static func loopLines(below directory: String) throws -> [String] {
        try Tool.run("losetup", ["-a"]).stdout.split(separator: "\n").map(String.init).filter { $0.contains(directory + "/") }
    }

    /// A scratch file system of the given kind mounted at a fresh directory: tmpfs, or ext4 in
    /// a loop-mounted file. Neither can reflink.
    final class NoReflinkScratch {
        let directory: TemporaryDirectory
        let mountPoint: String

        init(_ kind: String) throws {
            directory = try TemporaryDirectory(prefix: "verity-\(kind)")
            mountPoint = directory.appending("fs")
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            let r: Tool.Result
            if kind == "tmpfs" {
                r = try Tool.run("mount", ["-t", "tmpfs", "-o", "size=96M", "tmpfs", mountPoint])
            } else {
                let file = directory.appending("ext4.img")
                for (tool, args) in [("truncate", ["-s", "96M", file]), ("mkfs.ext4", ["-q", "-F", file])] {
                    let step = try Tool.run(tool, args)
                    try #require(step.status == 0, "\(tool): \(step.stderr)")
                }
                r = try Tool.run("mount", ["-o", "loop", file, mountPoint])
            }
            try #require(r.status == 0, "mount: \(r.stderr)")
        }

        func unmount() {
            if (try? Tool.run("umount", [mountPoint]))?.status != 0 { _ = try? Tool.run("umount", ["-l", mountPoint]) }
        }
    }

    // MARK: mount

    /// The "done means": on btrfs, after `mount` of a verity image, overwriting the data
    /// of a file in the image's root partition does not change what the mount shows.
    @Test(.timeLimit(.minutes(3)))
    func mountOnBtrfsShowsAPrivateCopyThatLaterWritesDoNotReach() throws {
        try Privileged.require(.root, .loopDevices, .btrfs, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try BtrfsScratch()
        defer { scratch.unmount() }
        let image = try Self.copyImage(into: scratch.mountPoint)
        let work = try TemporaryDirectory(prefix: "verity-btrfs-mnt")
        let target = work.appending("mnt")
        let hash = try Self.rootHash()

        let mount = try Imagectl.run(["mount", "--mkdir", "--root-hash=\(hash)", image, target])
        defer { _ = try? Imagectl.run(["umount", target]) }
        #expect(mount.status == 0, "\(mount.stderr)")
        // One line, saying which path was taken.
        #expect(mount.stderr.split(separator: "\n").count == 1, "\(mount.stderr)")
        #expect(mount.stderr.hasPrefix("root: device-mapper unavailable: verified the whole verity tree in userspace on a private reflink copy of \(image) ("),
                "\(mount.stderr)")
        #expect(mount.stderr.hasSuffix("mounting that copy read-only; later writes to \(image) do not reach the mount\n"), "\(mount.stderr)")
        // The copy has no name: a kill -9 of imagectl now would leave nothing beside the image.
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.mountPoint) == [URL(fileURLWithPath: image).lastPathComponent])

        let before = try String(contentsOfFile: target + "/etc/os-release", encoding: .utf8)
        #expect(before.contains("ID=imagectl-test\n"))
        #expect(try Self.tamperOSRelease(image) >= 1)
        // The write is real: the image file itself no longer verifies.
        let verify = try Imagectl.run(["verify", "--root-hash=\(hash)", image])
        #expect(verify.status == 1, "\(verify.stdout)")
        try Self.dropCaches()
        #expect(try String(contentsOfFile: target + "/etc/os-release", encoding: .utf8) == before)
        #expect(try String(contentsOfFile: target + "/usr/lib/os-release", encoding: .utf8) == before)

        let umount = try Imagectl.run(["umount", target])
        #expect(umount.status == 0, "\(umount.stderr)")
        // The loop device on the copy went with the mount, and with it the copy.
        #expect(try Self.loopLines(below: scratch.mountPoint).isEmpty)
    }

    /// Where the image's file system cannot reflink, the mount says that its check was one-time
    /// and why there is no copy; and a later write does show through (what the line warns of,
    /// and proof that the btrfs test above would see a change if there were one).
    @Test(.timeLimit(.minutes(3)), arguments: ["tmpfs", "ext4"])
    func mountWithoutReflinkSaysTheCheckWasOneTime(fileSystem: String) throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"), .tool("losetup"), .tool("mkfs.ext4"))
        let scratch = try NoReflinkScratch(fileSystem)
        defer { scratch.unmount() }
        let image = try Self.copyImage(into: scratch.mountPoint)
        let target = scratch.directory.appending("mnt")

        let mount = try Imagectl.run(["mount", "--mkdir", "--root-hash=\(try Self.rootHash())", image, target])
        defer { _ = try? Imagectl.run(["umount", target]) }
        #expect(mount.status == 0, "\(mount.stderr)")
        #expect(mount.stderr.split(separator: "\n").count == 1, "\(mount.stderr)")
        #expect(mount.stderr.hasPrefix("root: device-mapper unavailable: verified the whole verity tree in userspace ("), "\(mount.stderr)")
        #expect(mount.stderr.contains("; the check was one-time: later writes to \(image) are not caught (no private copy: the file system of "),
                "\(mount.stderr)")
        #expect(mount.stderr.hasSuffix(" cannot reflink)\n"), "\(mount.stderr)")

        #expect(try String(contentsOfFile: target + "/etc/os-release", encoding: .utf8).contains("ID=imagectl-test\n"))
        #expect(try Self.tamperOSRelease(image) >= 1)
        try Self.dropCaches()
        #expect(try String(contentsOfFile: target + "/etc/os-release", encoding: .utf8).contains("ID=TAMPERED-0000\n"))
        #expect(try Imagectl.run(["umount", target]).status == 0)
        #expect(try Self.loopLines(below: scratch.mountPoint).isEmpty)
    }

    // MARK: run

    /// `run -i` says on stderr, in one line, which verity path it took (here: the private
    /// copy on btrfs); -q leaves the line out, as it does the other status lines.
    @Test(.timeLimit(.minutes(3)))
    func runSaysWhichVerityPathItTookUnlessQuiet() throws {
        try Privileged.require(.root, .loopDevices, .btrfs, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try BtrfsScratch()
        defer { scratch.unmount() }
        let image = try Self.copyImage(into: scratch.mountPoint)
        let hash = try Self.rootHash()

        let r = try Imagectl.run(["run", "-i", image, "--root-hash=\(hash)", "cat", "/etc/os-release"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("ID=imagectl-test\n"))
        let pathLines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("root: ") }
        #expect(pathLines.count == 1, "\(r.stderr)")
        #expect(pathLines.first?.contains("verified the whole verity tree in userspace on a private reflink copy of \(image)") == true,
                "\(r.stderr)")
        #expect(try Self.loopLines(below: scratch.mountPoint).isEmpty)

        let quiet = try Imagectl.run(["run", "-q", "-i", image, "--root-hash=\(hash)", "cat", "/etc/os-release"])
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stdout.contains("ID=imagectl-test\n"))
        #expect(quiet.stderr.isEmpty, "\(quiet.stderr)")
    }

    // MARK: verify

    /// verify says, in its report and its JSON, that its check was a one-time userspace hash of
    /// every block, and which path mount and run take on this machine.
    @Test func verifySaysWhichPathItsCheckWas() throws {
        try Privileged.require(.fixture("gpt-verity.raw"))
        let image = try #require(Fixtures.path("gpt-verity.raw"))
        let hash = try Self.rootHash()
        let dmVerity = FileManager.default.fileExists(atPath: "/dev/mapper/control")
            && ((try? String(contentsOfFile: "/proc/misc", encoding: .utf8)) ?? "").contains(" device-mapper\n")
        let expected = "userspace: every block hashed once now; later changes to the file are not seen by this check"
            + (dmVerity ? " (mount and run use dm-verity here, which checks every read)"
                        : " (no device-mapper here: mount and run check in userspace too)")

        let text = try Imagectl.run(["verify", "--root-hash=\(hash)", image])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.split(separator: "\n").filter { $0.hasPrefix("  path:") } == ["  path:       \(expected)"], "\(text.stdout)")

        let json = try Imagectl.run(["verify", "--json", "--root-hash=\(hash)", image])
        #expect(json.status == 0, "\(json.stderr)")
        let results = try #require(try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]])
        #expect(results.map { $0["path"] as? String } == [expected])
    }
}

