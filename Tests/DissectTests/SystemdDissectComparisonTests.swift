import Dissect
import Foundation
import Testing
import TestSupport

/// `Dissector` + `ImageInspector` against `systemd-dissect --json=short` on the same images:
/// designators, partition UUIDs, labels, fstypes, architecture, verity, partno, rw/growfs, and
/// OS release / hostname / machine ID / use-as must agree.
@Suite(.serialized) struct SystemdDissectComparisonTests {
    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory(prefix: "dissect-compare") }

    func requirements() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-dissect"), .tool("systemd-repart"))
    }

    /// Returns what was compared, for tests that check more.
    @discardableResult
    func compare(_ path: String, options: DissectOptions = DissectOptions(), peerArgs: [String] = [],
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> DissectedImage {
        let peer = try Tool.run("systemd-dissect", ["--json=short"] + peerArgs + [path])
        try #require(peer.status == 0, "systemd-dissect failed: \(peer.stderr)", sourceLocation: sourceLocation)
        let json = try #require(try JSONSerialization.jsonObject(with: peer.stdoutData) as? [String: Any], sourceLocation: sourceLocation)
        var image = try Dissector.dissect(path: path, options: options)
        image.metadata = try ImageInspector.readMetadata(image: image)

        let mounts = try #require(json["mounts"] as? [[String: Any]], sourceLocation: sourceLocation)
        let theirs = mounts.compactMap { $0["designator"] as? String }
        #expect(image.partitions.map(\.designator.rawValue) == theirs, "designators", sourceLocation: sourceLocation)
        for m in mounts {
            guard let d = m["designator"] as? String, let ours = image.partitions.first(where: { $0.designator.rawValue == d }) else { continue }
            #expect(ours.uuid?.lowercased == m["partition_uuid"] as? String, "\(d) partition_uuid", sourceLocation: sourceLocation)
            #expect(ours.label == m["partition_label"] as? String, "\(d) partition_label", sourceLocation: sourceLocation)
            #expect(ours.fstype == m["fstype"] as? String, "\(d) fstype", sourceLocation: sourceLocation)
            #expect(ours.architecture?.rawValue == m["architecture"] as? String, "\(d) architecture", sourceLocation: sourceLocation)
            #expect(ours.verity?.rawValue == m["verity"] as? String, "\(d) verity", sourceLocation: sourceLocation)
            #expect(ours.number == m["partno"] as? Int, "\(d) partno", sourceLocation: sourceLocation)
            #expect((ours.readOnly ? "ro" : "rw") == m["rw"] as? String, "\(d) rw", sourceLocation: sourceLocation)
            #expect(ours.growFileSystem == m["growfs"] as? Bool, "\(d) growfs", sourceLocation: sourceLocation)
        }
        let meta = try #require(image.metadata, sourceLocation: sourceLocation)
        #expect(meta.osRelease == json["osRelease"] as? [String], "osRelease", sourceLocation: sourceLocation)
        #expect(meta.hostname == json["hostname"] as? String, "hostname", sourceLocation: sourceLocation)
        #expect(meta.machineID == json["machineId"] as? String, "machineId", sourceLocation: sourceLocation)
        #expect(image.useBootableContainer == json["useBootableContainer"] as? Bool, "useBootableContainer", sourceLocation: sourceLocation)
        #expect(image.useBootableUEFI == json["useBootableUefi"] as? Bool, "useBootableUefi", sourceLocation: sourceLocation)
        #expect(image.usePortableService == json["usePortableService"] as? Bool, sourceLocation: sourceLocation)
        return image
    }

    func rootHash(fromRepart json: String) -> String? {
        guard let list = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else { return nil }
        return list.compactMap { $0["roothash"] as? String }.first
    }

    static func verityDefinitions(_ tree: String) -> [String: String] { [
        "10-root.conf": "[Partition]\nType=root\nFormat=ext4\nCopyFiles=\(tree):/\nVerity=data\nVerityMatchKey=root\nSizeMinBytes=20M\n",
        "20-root-verity.conf": "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nSizeMinBytes=4M\n",
    ] }

    @Test func rootWithVerityPartition() throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let (path, json) = try TestImages.repart(in: dir, name: "verity", definitions: Self.verityDefinitions(tree))
        // Without a root hash: verity "no", read-write.
        let plain = try compare(path)
        #expect(plain.partition(.root)?.verity == VerityState.no)
        // With the root hash as a sidecar (discovered by both tools): verity "yes", read-only.
        let hash = try #require(rootHash(fromRepart: json))
        try "\(hash)\n".write(toFile: dir.appending("verity.roothash"), atomically: true, encoding: .utf8)
        let paired = try compare(path)
        #expect(paired.partition(.root)?.verity == VerityState.yes)
        #expect(paired.verity.rootHashSource?.contains("sidecar") == true)
    }

    @Test func signedVerity() throws {
        try requirements()
        try Privileged.require(.tool("openssl"))
        let tree = try TestImages.tree(in: dir)
        let key = dir.appending("key.pem"), cert = dir.appending("cert.pem")
        try TestImages.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-x509", "-days", "30",
                                       "-subj", "/CN=imagectl dissect test", "-out", cert])
        var defs = Self.verityDefinitions(tree)
        defs["30-root-verity-sig.conf"] = "[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n"
        let (path, _) = try TestImages.repart(in: dir, name: "signed", definitions: defs, extra: ["--private-key=\(key)", "--certificate=\(cert)"])
        let image = try compare(path)
        #expect(image.partition(.root)?.verity == VerityState.signed)
        #expect(image.partition(.rootVeritySignature) != nil)
        #expect(image.verity.rootHashSource?.contains("signature partition") == true)
    }

    @Test func usrOnlyImage() throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let usrTree = dir.appending("usrtree")
        try FileManager.default.createDirectory(atPath: "\(usrTree)/lib", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(tree)/usr/lib/os-release", toPath: "\(usrTree)/lib/os-release")
        let (path, _) = try TestImages.repart(in: dir, name: "usr", definitions: [
            "10-usr.conf": "[Partition]\nType=usr\nFormat=ext4\nCopyFiles=\(usrTree):/\nVerity=data\nVerityMatchKey=usr\nSizeMinBytes=20M\n",
            "20-usr-verity.conf": "[Partition]\nType=usr-verity\nVerity=hash\nVerityMatchKey=usr\nSizeMinBytes=4M\n",
        ])
        let image = try compare(path)
        #expect(image.partition(.usr) != nil && image.partition(.root) == nil)
        #expect(image.metadata?.osReleaseValue("ID") == "imagectl-test")
    }

    @Test func multiplePartitions() throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let (path, _) = try TestImages.repart(in: dir, name: "multi", definitions: [
            "10-root.conf": "[Partition]\nType=root\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=20M\n",
            "20-home.conf": "[Partition]\nType=home\nFormat=ext4\nLabel=my-home\nSizeMinBytes=10M\n",
            "30-srv.conf": "[Partition]\nType=srv\nFormat=btrfs\nSizeMinBytes=120M\n",
            "40-var.conf": "[Partition]\nType=var\nFormat=xfs\nSizeMinBytes=300M\n",
            "50-tmp.conf": "[Partition]\nType=tmp\nFormat=ext4\nSizeMinBytes=10M\n",
            "60-swap.conf": "[Partition]\nType=swap\nFormat=swap\nSizeMinBytes=10M\n",
        ])
        let image = try compare(path)
        #expect(Set(image.partitions.map(\.designator)) == [.root, .home, .srv, .var, .tmp, .swap])
        #expect(image.partition(.home)?.label == "my-home")
    }

    @Test func abRootPair() throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let (path, _) = try TestImages.repart(in: dir, name: "ab", definitions: [
            "10-root-a.conf": "[Partition]\nType=root\nLabel=os_1.9\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=16M\n",
            "20-root-b.conf": "[Partition]\nType=root\nLabel=os_1.10\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=16M\n",
        ])
        let image = try compare(path)
        #expect(image.partition(.root)?.label == "os_1.10")
    }

    @Test func genericLinuxPartition() throws {
        try requirements()
        let tree = try TestImages.tree(in: dir)
        let (path, _) = try TestImages.repart(in: dir, name: "generic", definitions: [
            "10-data.conf": "[Partition]\nType=linux-generic\nFormat=ext4\nCopyFiles=\(tree):/\nSizeMinBytes=16M\n",
        ])
        let image = try compare(path)
        #expect(image.partition(.root)?.architecture == nil)
    }

    @Test func mbrImage() throws {
        try requirements()
        try Privileged.require(.tool("sfdisk"), .tool("mkfs.ext4"))
        let tree = try TestImages.tree(in: dir)
        let image = try compare(try TestImages.mbr(tree: tree, in: dir))
        #expect(image.table == .mbr)
    }

    @Test(arguments: ["ext4", "btrfs", "xfs", "squashfs", "erofs"])
    func bareFilesystem(_ fstype: String) throws {
        try requirements()
        let tool = ["ext4": "mkfs.ext4", "btrfs": "mkfs.btrfs", "xfs": "mkfs.xfs", "squashfs": "mksquashfs", "erofs": "mkfs.erofs"][fstype]!
        try Privileged.require(.tool(tool))
        let tree = try TestImages.tree(in: dir)
        let path = try TestImages.bare(fstype, tree: tree, in: dir)
        if fstype == "xfs" { return }  // mkfs.xfs cannot fill from a directory; checked below by dissect only
        let image = try compare(path)
        #expect(image.table == .none && image.partition(.root)?.fstype == fstype)
    }

    @Test func bareXFSWithoutContent() throws {
        try requirements()
        try Privileged.require(.tool("mkfs.xfs"))
        let path = try TestImages.bare("xfs", tree: "", in: dir)
        let peer = try Tool.run("systemd-dissect", ["--json=short", path])
        let image = try Dissector.dissect(path: path)
        #expect(image.partition(.root)?.fstype == "xfs")
        #expect(peer.stdout.contains("\"fstype\":\"xfs\""))
    }

    /// The shared fixtures (fixtures/build.sh), when built: every one must agree with the peer.
    /// bare-vfat is left out: this kernel has no vfat, so systemd-dissect cannot mount it.
    @Test(arguments: ["gpt-verity", "gpt-verity-signed", "gpt-usr", "gpt-multi", "gpt-ab", "gpt-generic", "gpt-sidecar",
                      "mbr", "bare-ext4", "bare-btrfs", "bare-xfs", "bare-squashfs", "bare-erofs", "debian-gpt"])
    func fixture(_ name: String) throws {
        try requirements()
        try Privileged.require(.fixture("\(name).raw"))
        try compare(try #require(Fixtures.path("\(name).raw")))
    }
}
