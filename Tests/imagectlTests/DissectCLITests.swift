import Foundation
import Testing
import TestSupport

/// The dissect verbs from the command line: output, exit status, one `error:` line on bad input,
/// and complete cleanup after mount/umount and copies.
@Suite(.serialized) struct DissectCLITests {
    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory(prefix: "dissect-cli") }

    func oneErrorLine(_ r: Tool.Result, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, sourceLocation: sourceLocation)
        #expect(r.stderr.hasPrefix("error: "), sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count == 1, sourceLocation: sourceLocation)
    }

    /// A GPT made by sfdisk with one x86-64 root partition holding an ext4 (no root needed).
    func gptImage() throws -> String {
        let path = dir.appending("gpt.raw")
        let fs = dir.appending("root.ext4")
        let tree = dir.appending("tree")
        try FileManager.default.createDirectory(atPath: "\(tree)/etc", withIntermediateDirectories: true)
        try "ID=clitest\nVERSION_ID=3\n".write(toFile: "\(tree)/etc/os-release", atomically: true, encoding: .utf8)
        try "cli-host\n".write(toFile: "\(tree)/etc/hostname", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(tree)/srv", withIntermediateDirectories: true)
        for (tool, args) in [("truncate", ["-s", "16M", fs]), ("mkfs.ext4", ["-q", "-L", "cli-root", "-d", tree, fs]),
                             ("truncate", ["-s", "20M", path])] {
            let r = try Tool.run(tool, args)
            try #require(r.status == 0, "\(tool): \(r.stderr)")
        }
        let script = dir.appending("sfdisk.txt")
        try "label: gpt\nstart=2048, size=32768, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root-cli, uuid=11111111-2222-4333-8444-555555555555\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        let r = try Tool.run("sfdisk", ["-q", path], stdin: script)
        try #require(r.status == 0, "sfdisk: \(r.stderr)")
        let dd = try Tool.run("dd", ["if=\(fs)", "of=\(path)", "bs=1M", "seek=1", "conv=notrunc", "status=none"])
        try #require(dd.status == 0)
        return path
    }

    @Test func dissectJSONHasSystemdKeys() throws {
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let path = try gptImage()
        let r = try Imagectl.run(["dissect", "--json", path])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        #expect(json["name"] as? String == "gpt.raw")
        #expect(json["size"] as? Int == 20 << 20)
        let mounts = try #require(json["mounts"] as? [[String: Any]])
        #expect(mounts.count == 1)
        let root = try #require(mounts.first)
        #expect(root["designator"] as? String == "root")
        #expect(root["partition_uuid"] as? String == "11111111-2222-4333-8444-555555555555")
        #expect(root["partition_label"] as? String == "root-cli")
        #expect(root["fstype"] as? String == "ext4")
        #expect(root["architecture"] as? String == "x86-64")
        #expect(root["partno"] as? Int == 1)
        #expect(root["rw"] as? String == "rw")
        for key in ["verity", "growfs", "node"] { #expect(root.keys.contains(key), "key \(key)") }
        if geteuid() == 0 {
            #expect(json["hostname"] as? String == "cli-host")
            #expect(json["osRelease"] as? [String] == ["ID=clitest", "VERSION_ID=3"])
        }
    }

    @Test func dissectTable() throws {
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let r = try Imagectl.run(["dissect", try gptImage()])
        #expect(r.status == 0)
        #expect(r.stdout.contains("DESIGNATOR"))
        #expect(r.stdout.contains("root-cli"))
        #expect(r.stdout.contains("11111111-2222-4333-8444-555555555555"))
    }

    @Test func validateAcceptsAnImageAndRefusesGarbage() throws {
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let ok = try Imagectl.run(["validate", try gptImage()])
        #expect(ok.status == 0)
        #expect(ok.stdout.hasPrefix("OK: gpt.raw: gpt, root"))
        let junk = dir.appending("junk.raw")
        try Data(repeating: 0x42, count: 65536).write(to: URL(fileURLWithPath: junk))
        let bad = try Imagectl.run(["validate", junk])
        oneErrorLine(bad)
        #expect(bad.stderr.contains("not a disk image"))
    }

    @Test func badInputIsOneErrorLine() throws {
        let text = dir.appending("notes.txt")
        try "hello\n".write(toFile: text, atomically: true, encoding: .utf8)
        oneErrorLine(try Imagectl.run(["dissect", text]))
        oneErrorLine(try Imagectl.run(["dissect", "--json", dir.appending("missing.raw")]))
        oneErrorLine(try Imagectl.run(["dissect", "no-such-image-name"], root: dir.path))
        oneErrorLine(try Imagectl.run(["umount", dir.path]))
        oneErrorLine(try Imagectl.run(["validate", "/dev/null"]))
    }

    @Test func hostileGPTIsRefusedCleanly() throws {
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let path = try gptImage()
        // Damage both headers' CRC fields: the table is refused with one error line.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 512 + 16)
        try handle.write(contentsOf: Data([0, 0, 0, 0]))
        try handle.seek(toOffset: UInt64(20 << 20) - 512 + 16)
        try handle.write(contentsOf: Data([0, 0, 0, 0]))
        try handle.close()
        let r = try Imagectl.run(["dissect", path])
        oneErrorLine(r)
        #expect(r.stderr.contains("CRC mismatch"))
    }

    @Test func storeNameIsResolvedInThePool() throws {
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let pool = try TemporaryDirectory(prefix: "pool")
        try FileManager.default.copyItem(atPath: try gptImage(), toPath: pool.appending("myimage.raw"))
        let r = try Imagectl.run(["validate", "myimage"], root: pool.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("myimage.raw"))
    }

    @Test func imagePolicyRefusesBeforeMounting() throws {
        try Privileged.require(.root, .loopDevices, .tool("sfdisk"), .tool("mkfs.ext4"))
        let path = try gptImage()
        let target = dir.appending("policy-mnt")
        let r = try Imagectl.run(["mount", "--image-policy=root=verity", "--mkdir", path, target])
        oneErrorLine(r)
        #expect(!isMounted(target))
        #expect(loops(path).isEmpty)
        let v = try Imagectl.run(["validate", "--image-policy=root=verity+signed", path])
        oneErrorLine(v)
    }

    @Test func mountUmountCopyAndList() throws {
        try Privileged.require(.root, .loopDevices, .tool("sfdisk"), .tool("mkfs.ext4"))
        let path = try gptImage()
        let target = dir.appending("mnt")
        let m = try Imagectl.run(["mount", "--mkdir", path, target])
        #expect(m.status == 0, "\(m.stderr)")
        #expect(isMounted(target))
        #expect((try? String(contentsOfFile: "\(target)/etc/hostname", encoding: .utf8)) == "cli-host\n")
        #expect(loops(path).count == 1)
        let u = try Imagectl.run(["umount", "--rmdir", target])
        #expect(u.status == 0, "\(u.stderr)")
        #expect(!isMounted(target))
        #expect(!FileManager.default.fileExists(atPath: target))
        #expect(loops(path).isEmpty)

        let list = try Imagectl.run(["dissect", "--list", path])
        #expect(list.status == 0)
        #expect(list.stdout.split(separator: "\n").contains("/etc/hostname"))
        let mtree = try Imagectl.run(["dissect", "--mtree", path])
        #expect(mtree.stdout.contains("./etc/hostname type=file mode=0644 uid=0 gid=0 size=9 sha256digest="))

        let src = dir.appending("payload.txt")
        try "payload\n".write(toFile: src, atomically: true, encoding: .utf8)
        #expect(try Imagectl.run(["copy-to", path, src, "/srv/payload.txt"]).status == 0)
        let back = try Imagectl.run(["copy-from", path, "/srv/payload.txt", "-"])
        #expect(back.status == 0 && back.stdout == "payload\n")
        let out = dir.appending("hostname.out")
        #expect(try Imagectl.run(["copy-from", path, "/etc/hostname", out]).status == 0)
        #expect((try? String(contentsOfFile: out, encoding: .utf8)) == "cli-host\n")
        // A path that climbs out of the image stays inside it.
        oneErrorLine(try Imagectl.run(["copy-from", path, "../../../../etc/shadow", "-"]))
        #expect(loops(path).isEmpty)
        #expect(!(try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)).contains("/run/imagectl/tmp/"))
    }

    func isMounted(_ path: String) -> Bool {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        return info.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == resolved }
    }

    /// Loop devices whose backing file is `path` (sysfs).
    func loops(_ path: String) -> [String] {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { name in
            guard name.hasPrefix("loop"),
                  let file = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8) else { return false }
            return file.trimmingCharacters(in: .whitespacesAndNewlines) == resolved
        }
    }
}
