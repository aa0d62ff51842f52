import Foundation
import Testing
import TestSupport

/// `imagectl resize` (and the GPT move `vm --grow-image` shares with it), checked with sfdisk
/// and fdisk, which complain about a backup GPT that is not at the end of the disk.
@Suite struct GrowImageCLITests {
    @discardableResult
    static func sh(_ command: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw Failure(text: "\(command): \(result.stderr)") }
        return result.stdout
    }

    struct Failure: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }

    static func expectOneErrorLine(_ result: Tool.Result, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status != 0, "exit status 0: \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("error: ") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    }

    static func size(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
    }

    /// A 64 MiB raw disk with a GPT (sfdisk) and two partitions, the second ending 1 MiB before
    /// the end.
    static func makeGPTDisk(_ path: String) throws {
        try sh("truncate -s 64M \(path) && printf 'label: gpt\\nsize=16M, type=linux\\nsize=40M, type=linux\\n' | sfdisk -q \(path)")
    }

    /// What `sfdisk --verify` and `fdisk -l` say about a disk (sfdisk exits 0 even with a
    /// misplaced backup; its words tell).
    static func complaints(_ path: String) throws -> String {
        let verify = try Tool.run("sfdisk", ["--verify", path])
        let list = try Tool.run("fdisk", ["-l", path])
        let all = verify.stdout + verify.stderr + list.stderr
        return all.split(separator: "\n").filter {
            $0.localizedCaseInsensitiveContains("mismatch") || $0.localizedCaseInsensitiveContains("not at the end")
                || $0.localizedCaseInsensitiveContains("corrupt") || $0.localizedCaseInsensitiveContains("warning")
                || $0.localizedCaseInsensitiveContains("problem")
        }.joined(separator: "\n") + (verify.status == 0 ? "" : "\nsfdisk --verify: exit \(verify.status)")
    }

    /// sfdisk's view of the table: last usable LBA and the partitions' starts and sizes.
    static func table(_ path: String) throws -> (lastLBA: Int, partitions: [String]) {
        let json = try Tool.run("sfdisk", ["--json", path]).stdout
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let table = try #require(object["partitiontable"] as? [String: Any])
        let parts = (table["partitions"] as? [[String: Any]] ?? []).map { "\($0["start"] ?? "?")+\($0["size"] ?? "?")" }
        return (table["lastlba"] as? Int ?? -1, parts)
    }

    @Test("resize: a raw pool image grows sparse, its GPT backup moves to the new end; no shrinking, no trees")
    func resizePoolImage() throws {
        try Privileged.require(.tool("sfdisk"), .tool("fdisk"))
        let box = try TemporaryDirectory(prefix: "imagectl-resize")
        let pool = box.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        let image = pool + "/disk.raw"
        try Self.makeGPTDisk(image)
        let before = try Self.table(image)
        // Control: a file only truncated larger has its backup GPT in the middle, which the
        // checks below see.
        try Self.sh("cp --sparse=always \(image) \(box.appending("truncated.raw")) && truncate -s 128M \(box.appending("truncated.raw"))")
        #expect(!(try Self.complaints(box.appending("truncated.raw"))).isEmpty)
        let allocated = try Self.sh("du -B1 \(image)")

        let grown = try Imagectl.run(["resize", "disk", "+64M"], root: pool)
        #expect(grown.status == 0, "\(grown.stderr)")
        #expect(grown.stderr.contains("Grew disk from 67108864 to 134217728 bytes"), "\(grown.stderr)")
        #expect(Self.size(image) == 128 << 20)
        let complaints = try Self.complaints(image)
        #expect(complaints.isEmpty, "\(complaints)")
        let after = try Self.table(image)
        // 128 MiB = 262144 sectors; the backup array (32 sectors) and header take the last 33.
        #expect(after.lastLBA == 262144 - 34, "\(after)")
        #expect(after.partitions == before.partitions)
        // Sparse: the new 64 MiB took no blocks (du counts the same data plus the moved table).
        let grownAllocation = UInt64(try Self.sh("du -B1 \(image)").split(separator: "\t")[0]) ?? .max
        #expect(grownAllocation <= (UInt64(allocated.split(separator: "\t")[0]) ?? 0) + 64 << 10, "\(grownAllocation)")
        // sfdisk can now grow the last partition into the new space.
        try Self.sh("echo ', +' | sfdisk -q -N 2 \(image)")
        let regrown = try Self.table(image)
        let lastSize = Int(regrown.partitions.last?.split(separator: "+").last ?? "") ?? 0
        #expect(lastSize > (100 << 20) / 512, "\(regrown)")

        let absolute = try Imagectl.run(["resize", "disk", "256M", "--json=short"], root: pool)
        #expect(absolute.status == 0, "\(absolute.stderr)")
        #expect(absolute.stdout.contains("\"newSize\":268435456"), "\(absolute.stdout)")
        #expect(try Self.complaints(image).isEmpty)

        Self.expectOneErrorLine(try Imagectl.run(["resize", "disk", "100M"], root: pool), containing: "not shrunk")
        #expect(Self.size(image) == 256 << 20)
        let badSize = try Imagectl.run(["resize", "disk", "lots"], root: pool)
        #expect(badSize.status != 0 && badSize.stderr.hasPrefix("error: "), "\(badSize.stderr)")
        try FileManager.default.createDirectory(atPath: pool + "/tree/etc", withIntermediateDirectories: true)
        Self.expectOneErrorLine(try Imagectl.run(["resize", "tree", "1G"], root: pool), containing: "only raw images can be resized")
    }


    @Test("vm --grow-image: a size below the image's, a bad size or a qcow2 is one error line; nothing grows or starts")
    func vmGrowImageBadInput() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("sfdisk"), .tool("qemu-img"))
        let box = try TemporaryDirectory(prefix: "imagectl-grow", under: "/var/tmp")
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-grow-tmp", under: "/var/tmp")
        let runtime = try TemporaryDirectory(prefix: "imagectl-grow-run")
        let environment = ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path]
        let image = box.appending("disk.raw")
        try Self.makeGPTDisk(image)
        try Self.sh("qemu-img convert -f raw -O qcow2 \(image) \(box.appending("disk.qcow2"))")
        for (arguments, message) in [(["-i", image, "--grow-image=10M"], "not shrunk"),
                                     (["-i", image, "--grow-image=+1X"], "invalid size"),
                                     (["-x", "-i", box.appending("disk.qcow2"), "--grow-image=+1G"], "grows raw images only"),
                                     (["-D", box.path, "--grow-image=+1G"], "a directory tree (-D) has no size to grow")] {
            let r = try Imagectl.run(["vm", "--console=read-only", "--kvm=no"] + arguments, environment: environment)
            Self.expectOneErrorLine(r, containing: message)
        }
        #expect(Self.size(image) == 64 << 20)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: vmTemp.path)) ?? []).isEmpty)
        // --print-command checks the size but grows nothing.
        let printed = try Imagectl.run(["vm", "-i", image, "--print-command", "--kvm=no", "--grow-image=+1G"], environment: environment)
        #expect(printed.status == 0, "\(printed.stderr)")
        #expect(Self.size(image) == 64 << 20)
    }
}
