import Dissect
import Foundation
import LinuxSystem
import Testing
import TestSupport

/// Applying mount plans for real: files appear where FORMATS.md §1 puts them, and teardown is
/// complete (no mount, no loop device attached to the image) after umount and after a failure.
@Suite(.serialized) struct ImageMounterTests {
    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory(prefix: "dissect-mount") }

    func requirements() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-repart"), .btrfs)
    }

    func multiImage(corruptHome: Bool = false) throws -> String {
        let tree = try TestImages.tree(in: dir)
        let home = try TestImages.marker(in: dir, "home")
        let srv = try TestImages.marker(in: dir, "srv")
        let varTree = try TestImages.marker(in: dir, "var")
        try FileManager.default.createDirectory(atPath: "\(varTree)/tmp", withIntermediateDirectories: true)
        let tmp = try TestImages.marker(in: dir, "tmp")
        let (path, _) = try TestImages.repart(in: dir, name: "multi", definitions: [
            "10-root.conf": "[Partition]\nType=root\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=20M\n",
            "20-home.conf": "[Partition]\nType=home\nFormat=ext4\nCopyFiles=\(home):/\nSizeMinBytes=10M\n",
            "30-srv.conf": "[Partition]\nType=srv\nFormat=btrfs\nCopyFiles=\(srv):/\nSizeMinBytes=120M\n",
            "40-var.conf": "[Partition]\nType=var\nFormat=xfs\nCopyFiles=\(varTree):/\nSizeMinBytes=300M\n",
            "50-tmp.conf": "[Partition]\nType=tmp\nFormat=ext4\nCopyFiles=\(tmp):/\nSizeMinBytes=10M\n",
        ])
        if corruptHome {
            // Keep the ext4 superblock (libblkid still says ext4) but destroy the group
            // descriptors and inode tables behind it: the kernel refuses to mount it.
            let image = try Dissector.dissect(path: path)
            let home = try #require(image.partition(.home))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seek(toOffset: home.offset + 4096)
            try handle.write(contentsOf: Data(repeating: 0xA5, count: 1 << 20))
            try handle.close()
        }
        return path
    }

    func attachedLoops(_ path: String) -> [Int] { LoopDevice.attached(to: path) }

    @Test func mountsEveryPartitionInPlaceAndUnmountsCompletely() async throws {
        try requirements()
        let path = try multiImage()
        let target = dir.appending("mnt")
        let image = try Dissector.dissect(path: path)
        let plan = try MountPlan.make(image)
        let record = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        #expect(record.mountPoints.count == 5)
        #expect(attachedLoops(path).count == 5)
        for (file, content) in [("home/marker", "home"), ("srv/marker", "srv"), ("var/marker", "var"), ("var/tmp/marker", "tmp")] {
            let text = try? String(contentsOfFile: "\(target)/\(file)", encoding: .utf8)
            #expect(text == "\(content)\n", "\(file)")
        }
        let text = try? String(contentsOfFile: "\(target)/etc/hostname", encoding: .utf8)
        #expect(text == "testhost\n")
        let mounts = Mount.mounts(under: target)
        #expect(mounts.count == 5)
        #expect(mounts.allSatisfy { $0.options.contains("nodev") })

        try ImageMounter.unmount(target)
        #expect(Mount.mounts(under: target).isEmpty)
        #expect(attachedLoops(path).isEmpty)
    }

    @Test func readOnlyMountIsReadOnly() async throws {
        try requirements()
        let path = try multiImage()
        let target = dir.appending("ro")
        let plan = try MountPlan.make(try Dissector.dissect(path: path), readOnly: true)
        _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        defer { try? ImageMounter.unmount(target) }
        #expect(!FileManager.default.createFile(atPath: "\(target)/home/new", contents: Data("x".utf8)))
        #expect(Mount.mounts(under: target).allSatisfy { $0.options.hasPrefix("ro") })
    }

    /// A failure half-way (the second partition cannot be mounted) leaves nothing mounted and
    /// no loop device attached.
    @Test func failureHalfWayLeavesNothingBehind() async throws {
        try requirements()
        let path = try multiImage(corruptHome: true)
        let target = dir.appending("half")
        let plan = try MountPlan.make(try Dissector.dissect(path: path))
        await #expect(throws: (any Error).self) {
            _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        }
        #expect(Mount.mounts(under: target).isEmpty)
        #expect(attachedLoops(path).isEmpty)
    }

    @Test func targetWithAMountIsRefused() async throws {
        try requirements()
        let path = try multiImage()
        let target = dir.appending("busy")
        let plan = try MountPlan.make(try Dissector.dissect(path: path))
        _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        defer { try? ImageMounter.unmount(target) }
        await #expect(throws: (any Error).self) {
            _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        }
        #expect(Mount.mounts(under: target).count == 5)
    }

    /// SECURITY.md 13: a verity root is verified completely before it is mounted; a flipped bit
    /// in the data means nothing is mounted.
    @Test func verityRootIsVerifiedBeforeMountAndRefusedWhenDamaged() async throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let (path, json) = try TestImages.repart(in: dir, name: "verity", definitions: SystemdDissectComparisonTests.verityDefinitions(tree))
        let list = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        let hash = try #require(list.compactMap { $0["roothash"] as? String }.first)
        let options = DissectOptions(verity: ExplicitVerityOptions(rootHash: hash))
        let image = try Dissector.dissect(path: path, options: options)
        let plan = try MountPlan.make(image)
        #expect(plan.mounts.first?.verity != nil)

        let target = dir.appending("verity")
        let record = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false))
        #expect(record.verity.first?.contains("verified the whole verity tree in userspace") == true)
        #expect(Mount.mounts(under: target).first?.options.hasPrefix("ro") == true)
        try ImageMounter.unmount(target)

        // Flip one bit in the middle of the root partition's data.
        let root = try #require(image.partition(.root))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: root.offset + root.size / 2)
        let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
        try handle.seek(toOffset: root.offset + root.size / 2)
        try handle.write(contentsOf: Data([byte ^ 0x10]))
        try handle.close()
        await #expect { _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false)) } throws: { error in
            "\(error)".contains("verity check of the root partition failed")
        }
        #expect(Mount.mounts(under: target).isEmpty)
        #expect(attachedLoops(path).isEmpty)
    }

    /// LUKS partitions are detected and reported; mounting fails clearly (no device-mapper) and
    /// leaves nothing behind.
    @Test func luksPartitionIsReportedAndRefusedCleanly() async throws {
        try requirements()
        try Privileged.require(.tool("cryptsetup"))
        let tree = try TestImages.tree(in: dir)
        let (path, _) = try TestImages.repart(in: dir, name: "luks", definitions: [
            "10-root.conf": "[Partition]\nType=root\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=20M\n",
            "20-home.conf": "[Partition]\nType=home\nSizeMinBytes=20M\n",
        ])
        var image = try Dissector.dissect(path: path)
        let home = try #require(image.partition(.home))
        // Format a LUKS2 container into the home partition's byte range.
        let luks = dir.appending("home.luks")
        try TestImages.run("truncate", ["-s", "\(home.size)", luks])
        let key = dir.appending("key")
        try "secret".write(toFile: key, atomically: true, encoding: .utf8)
        let hadControl = FileManager.default.fileExists(atPath: "/dev/mapper/control")
        try TestImages.run("cryptsetup", ["luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                                          "--pbkdf-force-iterations", "1000", "--key-file", key, luks])
        // libdevmapper creates /dev/mapper/control even where the kernel has no device-mapper;
        // remove what this test made so that nothing else mistakes it for a working one.
        let misc = (try? String(contentsOfFile: "/proc/misc", encoding: .utf8)) ?? ""
        if !hadControl, !misc.contains("device-mapper") {
            try? FileManager.default.removeItem(atPath: "/dev/mapper/control")
            try? FileManager.default.removeItem(atPath: "/dev/mapper")
        }
        try TestImages.run("dd", ["if=\(luks)", "of=\(path)", "bs=1M", "seek=\(home.offset >> 20)", "conv=notrunc", "status=none"])

        image = try Dissector.dissect(path: path)
        let encrypted = try #require(image.partition(.home))
        #expect(encrypted.fstype == "crypto_LUKS" && encrypted.isEncrypted)
        #expect(image.protection(of: encrypted) == .encrypted)
        let plan = try MountPlan.make(image)
        let target = dir.appending("luks-mnt")
        await #expect { _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false)) } throws: { error in
            "\(error)".contains("LUKS-encrypted") && "\(error)".contains("device-mapper")
        }
        #expect(Mount.mounts(under: target).isEmpty)
        #expect(attachedLoops(path).isEmpty)
    }

    /// SECURITY.md 14: a signed verity root is mounted only when a trusted certificate made the
    /// signature; an image signed by anyone else is refused before anything is mounted, and an
    /// image policy asking for "signed" does not count an untrusted signature.
    @Test func signedRootNeedsATrustedCertificate() async throws {
        try requirements()
        try Privileged.require(.tool("openssl"))
        let tree = try TestImages.tree(in: dir)
        let key = dir.appending("key.pem"), cert = dir.appending("cert.pem")
        try TestImages.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-x509", "-days", "30",
                                       "-subj", "/CN=imagectl mount test", "-out", cert])
        var defs = SystemdDissectComparisonTests.verityDefinitions(tree)
        defs["30-root-verity-sig.conf"] = "[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n"
        let (path, _) = try TestImages.repart(in: dir, name: "signed", definitions: defs, extra: ["--private-key=\(key)", "--certificate=\(cert)"])
        let image = try Dissector.dissect(path: path)
        #expect(image.partition(.root)?.verity == VerityState.signed)
        let plan = try MountPlan.make(image)
        let target = dir.appending("signed-mnt")

        let emptyKeyring = dir.appending("keyring-empty")
        try FileManager.default.createDirectory(atPath: emptyKeyring, withIntermediateDirectories: true)
        await #expect { _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false, keyringDirectory: emptyKeyring)) } throws: { error in
            "\(error)".contains("signature not trusted")
        }
        #expect(Mount.mounts(under: target).isEmpty)
        #expect(attachedLoops(path).isEmpty)
        let policy = try ImagePolicy.parse("root=signed")
        await #expect(throws: (any Error).self) { _ = try await image.applying(policy, keyringDirectory: emptyKeyring) }

        let keyring = dir.appending("keyring")
        try FileManager.default.createDirectory(atPath: keyring, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: cert, toPath: "\(keyring)/test.pem")
        _ = try await image.applying(policy, keyringDirectory: keyring)
        let record = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: true, record: false, keyringDirectory: keyring))
        #expect(record.verity.contains { $0.contains("is trusted") })
        #expect(record.verity.contains { $0.contains("verified the whole verity tree") })
        #expect(Mount.mounts(under: target).first?.options.hasPrefix("ro") == true)
        try ImageMounter.unmount(target)
        #expect(attachedLoops(path).isEmpty)
    }
}
