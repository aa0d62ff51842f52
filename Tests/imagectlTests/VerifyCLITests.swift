import Foundation
import Testing
import TestSupport

/// `imagectl verify` as a user runs it: exit status, the lines it prints, one error line.
@Suite struct VerifyCLITests {
    /// A data file and its hash tree made by veritysetup; returns (data, hash, root hash).
    static func dataFile(in dir: TemporaryDirectory, bytes: Int = 6 << 20) throws -> (data: String, hash: String, root: String) {
        let data = dir.appending("data.img")
        let hash = dir.appending("data.img.verity")
        var generator = SystemRandomNumberGenerator()
        var content = [UInt8](repeating: 0, count: bytes)
        for i in stride(from: 0, to: bytes, by: 8) {
            let word = generator.next()
            for j in 0..<8 where i + j < bytes { content[i + j] = UInt8(truncatingIfNeeded: word >> (8 * j)) }
        }
        try Data(content).write(to: URL(fileURLWithPath: data))
        let result = try Tool.run("veritysetup", ["format", data, hash])
        #expect(result.status == 0, "veritysetup format: \(result.stderr)")
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("Root hash:") } ?? ""
        return (data, hash, line.dropFirst("Root hash:".count).trimmingCharacters(in: .whitespaces))
    }

    static func flipBit(_ path: String, at offset: UInt64) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        let old = try handle.read(upToCount: 1)?.first ?? 0
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([old ^ 0x10]))
    }

    @Test("a good data file verifies: exit 0 and what was checked")
    func good() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-good")
        let (data, hash, root) = try Self.dataFile(in: dir)
        let result = try Imagectl.run(["verify", data, "--verity-data=\(hash)", "--root-hash=\(root)"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("verified"))
        #expect(result.stdout.contains(root))
        #expect(result.stdout.contains("(from option)"))
        // 1536 data blocks, 12 level-0 hash blocks and the top block.
        #expect(result.stdout.contains("1549 blocks"))
        #expect(result.stdout.contains("MB/s"))
        #expect(result.stderr.isEmpty)
    }

    @Test("the .verity and .roothash sidecars are found without options")
    func sidecars() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-sidecar")
        let (data, _, root) = try Self.dataFile(in: dir)
        try root.write(toFile: dir.appending("data.img.roothash"), atomically: true, encoding: .utf8)
        let result = try Imagectl.run(["verify", data])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("from sidecar \(dir.appending("data.img.roothash"))"))
    }

    @Test("a flipped data bit: exit 1, one error line naming the block")
    func badBlock() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-bad")
        let (data, hash, root) = try Self.dataFile(in: dir)
        try Self.flipBit(data, at: 4096 * 1000 + 17)
        let result = try Imagectl.run(["verify", data, "--verity-data=\(hash)", "--root-hash=\(root)"])
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("error: ") == true)
        #expect(result.stderr.contains("data block 1000 "))
        #expect(result.stderr.contains("byte offset 4096000"))
        #expect(!result.stdout.contains("verified"))
    }

    @Test("a wrong root hash: exit 1")
    func wrongRootHash() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-wrong")
        let (data, hash, root) = try Self.dataFile(in: dir, bytes: 1 << 20)
        let wrong = String(root.dropLast()) + (root.hasSuffix("0") ? "1" : "0")
        let result = try Imagectl.run(["verify", data, "--verity-data=\(hash)", "--root-hash=\(wrong)"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("root hash mismatch"))
    }

    @Test("no root hash anywhere: exit 1 saying so")
    func missingHash() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-missing")
        let (data, hash, _) = try Self.dataFile(in: dir, bytes: 1 << 20)
        let result = try Imagectl.run(["verify", data, "--verity-data=\(hash)"])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("error: no root hash"))
        let noTree = try Imagectl.run(["verify", dir.appending("nonexistent.img")])
        #expect(noTree.status != 0)
        #expect(noTree.stderr.hasPrefix("error: "))
    }

    @Test("--json reports the checked area")
    func json() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-json")
        let (data, hash, root) = try Self.dataFile(in: dir, bytes: 1 << 20)
        let result = try Imagectl.run(["verify", data, "--verity-data=\(hash)", "--root-hash=\(root)", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let parsed = try JSONSerialization.jsonObject(with: result.stdoutData) as? [[String: Any]]
        let first = try #require(parsed?.first)
        #expect(first["rootHash"] as? String == root)
        let report = try #require(first["report"] as? [String: Any])
        #expect(report["dataBlocks"] as? Int == 256)
        #expect(report["algorithm"] as? String == "sha256")
    }

    // MARK: GPT images made by systemd-repart

    /// root + root-verity (+ root-verity-sig when a key is given), made by systemd-repart.
    static func repartImage(in dir: TemporaryDirectory, sign: (cert: String, key: String)?, designator: String = "root",
                            content: String = "ID=verifytest\n") throws -> (image: String, root: String) {
        let defs = dir.appending("defs")
        let tree = dir.appending("tree")
        try FileManager.default.createDirectory(atPath: defs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree + "/etc", withIntermediateDirectories: true)
        try content.write(toFile: tree + "/etc/os-release", atomically: true, encoding: .utf8)
        let d = designator
        try "[Partition]\nType=\(d)\nFormat=ext4\nCopyFiles=\(tree):/\nVerity=data\nVerityMatchKey=\(d)\nSizeMinBytes=24M\n"
            .write(toFile: defs + "/10-\(d).conf", atomically: true, encoding: .utf8)
        try "[Partition]\nType=\(d)-verity\nVerity=hash\nVerityMatchKey=\(d)\nSizeMinBytes=4M\n"
            .write(toFile: defs + "/20-\(d)-verity.conf", atomically: true, encoding: .utf8)
        var arguments = ["--dry-run=no", "--definitions=\(defs)", "--empty=create", "--size=auto", "--json=short"]
        if let sign {
            try "[Partition]\nType=\(d)-verity-sig\nVerity=signature\nVerityMatchKey=\(d)\n"
                .write(toFile: defs + "/30-\(d)-verity-sig.conf", atomically: true, encoding: .utf8)
            arguments += ["--private-key=\(sign.key)", "--certificate=\(sign.cert)"]
        }
        let image = dir.appending("os.raw")
        let result = try Tool.run("systemd-repart", arguments + [image])
        #expect(result.status == 0, "systemd-repart: \(result.stderr)")
        let entries = try JSONSerialization.jsonObject(with: result.stdoutData) as? [[String: Any]] ?? []
        let root = entries.compactMap { $0["roothash"] as? String }.first ?? ""
        return (image, root)
    }

    static func textFile(_ text: String, in dir: TemporaryDirectory) throws -> String {
        let path = dir.appending("content-\(UUID().uuidString.prefix(6))")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func certificate(in dir: TemporaryDirectory, name: String) throws -> (cert: String, key: String) {
        let cert = dir.appending("\(name).crt")
        let key = dir.appending("\(name).key")
        let result = try Tool.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-x509", "-days", "3650",
                                              "-subj", "/CN=\(name)", "-out", cert])
        #expect(result.status == 0, "openssl: \(result.stderr)")
        return (cert, key)
    }

    static func keyring(_ cert: String, in dir: TemporaryDirectory, name: String) throws -> String {
        let keyring = dir.appending(name)
        try FileManager.default.createDirectory(atPath: keyring, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: cert, toPath: keyring + "/cert.pem")
        return keyring
    }

    @Test("a repart-signed GPT image: signature valid, tree verified; untrusted keyring refused")
    func signedImage() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-repart"), .tool("mkfs.ext4"), .tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-signed")
        let signer = try Self.certificate(in: dir, name: "imagectl-test-signer")
        let (image, root) = try Self.repartImage(in: dir, sign: signer)
        let trusted = try Self.keyring(signer.cert, in: dir, name: "trusted")

        let good = try Imagectl.run(["verify", image, "--verity-keyring=\(trusted)"])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("root: verified"))
        #expect(good.stdout.contains(root))
        #expect(good.stdout.contains("from signature partition root-verity-sig"))
        #expect(good.stdout.contains("valid, signed by"))
        #expect(good.stdout.contains("imagectl-test-signer"))

        let rogue = try Self.certificate(in: dir, name: "rogue")
        let untrusted = try Self.keyring(rogue.cert, in: dir, name: "untrusted")
        let refused = try Imagectl.run(["verify", image, "--verity-keyring=\(untrusted)"])
        #expect(refused.status == 1)
        // The signature partition names the signer's fingerprint, which is not in this keyring.
        #expect(refused.stderr.contains("matches no certificate in \(untrusted)"), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1)

        // The same signature as a .roothash.p7s sidecar carries no fingerprint: the chain check refuses it.
        let plainDir = try TemporaryDirectory(prefix: "verify-cli-p7s")
        let plain = try Self.repartImage(in: plainDir, sign: nil)
        let p7s = dir.appending("sig.p7s")
        let signed = try Tool.run("openssl", ["smime", "-sign", "-binary", "-noattr", "-outform", "DER", "-signer", rogue.cert,
                                              "-inkey", rogue.key, "-out", p7s, "-in", try Self.textFile(plain.root, in: dir)])
        #expect(signed.status == 0, "\(signed.stderr)")
        // The root hash itself came from the command line: authenticated by the user, the
        // signature reported as not trusted.
        let chain = try Imagectl.run(["verify", plain.image, "--root-hash=\(plain.root)", "--root-hash-sig=\(p7s)",
                                      "--verity-keyring=\(trusted)"])
        #expect(chain.status == 0, "\(chain.stderr)")
        #expect(chain.stdout.contains("root: verified (authenticated)"))
        #expect(chain.stdout.contains("not trusted"), "\(chain.stdout)")
        let accepted = try Imagectl.run(["verify", plain.image, "--root-hash=\(plain.root)", "--root-hash-sig=\(p7s)",
                                         "--verity-keyring=\(untrusted)"])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(accepted.stdout.contains("signed by CN=rogue"))

        // A root hash that contradicts the signature partition is refused.
        let other = String(repeating: "ab", count: 32)
        let contradicted = try Imagectl.run(["verify", image, "--root-hash=\(other)", "--verity-keyring=\(trusted)"])
        #expect(contradicted.status == 1)
        #expect(contradicted.stderr.hasPrefix("error: "))
    }

    /// An attacker changes an image and writes a new hash tree and a signature partition made
    /// with their own certificate: internally consistent, and never "verified".
    @Test("an image re-signed by another certificate after tampering is not authenticated")
    func resignedByAttacker() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-repart"), .tool("mkfs.ext4"), .tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-resigned")
        let vendor = try Self.certificate(in: dir, name: "vendor")
        let attacker = try Self.certificate(in: dir, name: "attacker")
        let (image, root) = try Self.repartImage(in: dir, sign: vendor)
        let vendorKeyring = try Self.keyring(vendor.cert, in: dir, name: "vendor-keyring")
        let genuine = try Imagectl.run(["verify", image, "--verity-keyring=\(vendorKeyring)"])
        #expect(genuine.status == 0, "\(genuine.stderr)")

        // The tampering: the same recipe with different content, signed by the attacker.
        let evilDir = try TemporaryDirectory(prefix: "verify-cli-evil")
        let (evil, evilRoot) = try Self.repartImage(in: evilDir, sign: attacker, content: "ID=evil\n")
        #expect(evilRoot != root)
        for keyring in [["--verity-keyring=\(vendorKeyring)"], ["--verity-keyring=\(dir.appending("no-such-keyring"))"], []] {
            let r = try Imagectl.run(["verify", evil] + keyring)
            #expect(r.status == 1, "\(keyring): \(r.stdout)")
            #expect(!r.stdout.contains("verified"), "\(r.stdout)")
            #expect(r.stdout.contains("root: consistent only, not authenticated"))
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("error: root: not authenticated") == true, "\(r.stderr)")
            #expect(r.stderr.contains("CN=attacker"))
        }
        // A policy that accepts unsigned verity makes it exit 0, still not "verified".
        let allowed = try Imagectl.run(["verify", evil, "--verity-keyring=\(vendorKeyring)", "--image-policy=root=verity"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stdout.contains("root: consistent only, not authenticated"))
        #expect(!allowed.stdout.contains("verified"))
        let json = try Imagectl.run(["verify", evil, "--verity-keyring=\(vendorKeyring)", "--image-policy=root=verity", "--json"])
        let first = try #require((try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]])?.first)
        #expect(first["authenticated"] as? Bool == false)
        #expect(first["protection"] as? String == "verity-only")
        // With --root-hash of the genuine image the tampered tree does not even match.
        let pinned = try Imagectl.run(["verify", evil, "--root-hash=\(root)"])
        #expect(pinned.status == 1)
    }

    @Test("a repart GPT image with a damaged root partition fails naming the block")
    func damagedImage() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-repart"), .tool("mkfs.ext4"), .tool("sfdisk"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-damaged")
        let (image, root) = try Self.repartImage(in: dir, sign: nil)
        let ok = try Imagectl.run(["verify", image, "--root-hash=\(root)"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("root: verified"))
        // First partition starts at 1 MiB (repart's alignment); damage its block 3 (512-byte blocks).
        try Self.flipBit(image, at: (1 << 20) + 3 * 512 + 9)
        let bad = try Imagectl.run(["verify", image, "--root-hash=\(root)"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("root: verity: data block 3 "), "\(bad.stderr)")
        #expect(bad.stderr.split(separator: "\n").count == 1)
    }

    @Test("a usr-only image: the usr partition is found, verified with --usr-hash, refused with a wrong one")
    func usrOnly() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-repart"), .tool("mkfs.ext4"))
        let dir = try TemporaryDirectory(prefix: "verify-cli-usr")
        let (image, usrHash) = try Self.repartImage(in: dir, sign: nil, designator: "usr")
        let good = try Imagectl.run(["verify", image, "--usr-hash=\(usrHash)"])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("usr: verified"))
        #expect(!good.stdout.contains("root: verified"))
        let wrong = String(repeating: "0", count: 64)
        let bad = try Imagectl.run(["verify", image, "--usr-hash=\(wrong)"])
        #expect(bad.status == 1)
        #expect(bad.stderr.hasPrefix("error: "))
        // No hash at all for a verity-protected usr partition: refused, not skipped.
        let none = try Imagectl.run(["verify", image])
        #expect(none.status == 1)
        #expect(none.stderr.contains("no root hash known"), "\(none.stderr)")
    }
}
