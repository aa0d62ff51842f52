import Dissect
import Foundation
import Testing
import TestSupport

/// Root hash signatures: the signature partition JSON, and PKCS#7 checks against a keyring.
@Suite struct VeritySignatureTests {
    static let rootHash = "8c477f0df8a035cf590a4714a74e7f3afcf2fc6bba78791f751801c65cae87bf"

    /// A self-signed certificate and key made with openssl in `dir`.
    static func makeCertificate(in dir: TemporaryDirectory, name: String) throws -> (cert: String, key: String) {
        let cert = dir.appending("\(name).crt")
        let key = dir.appending("\(name).key")
        let result = try Tool.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-x509", "-days", "3650",
                                              "-subj", "/CN=\(name)", "-out", cert])
        guard result.status == 0 else { throw VerityFixture.FixtureError(text: "openssl req: \(result.stderr)") }
        return (cert, key)
    }

    /// Signs `content` as systemd-repart does: PKCS#7, detached, no signed attributes, binary,
    /// signer certificate included. Returns the DER bytes.
    static func sign(_ content: String, cert: String, key: String, in dir: TemporaryDirectory) throws -> [UInt8] {
        let input = dir.appending("content-\(UUID().uuidString.prefix(6))")
        let output = input + ".p7s"
        try content.write(toFile: input, atomically: true, encoding: .utf8)
        let result = try Tool.run("openssl", ["smime", "-sign", "-in", input, "-signer", cert, "-inkey", key, "-binary",
                                              "-noattr", "-outform", "DER", "-out", output])
        guard result.status == 0 else { throw VerityFixture.FixtureError(text: "openssl smime: \(result.stderr)") }
        return try VerityFixture.read(output)
    }

    static func keyring(_ certificates: [String], in dir: TemporaryDirectory) throws -> String {
        let keyring = dir.appending("keyring-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: keyring, withIntermediateDirectories: true)
        for (i, cert) in certificates.enumerated() {
            try FileManager.default.copyItem(atPath: cert, toPath: "\(keyring)/\(i).pem")
        }
        try "not a certificate\n".write(toFile: "\(keyring)/README", atomically: true, encoding: .utf8)
        return keyring
    }

    // MARK: signature partition JSON

    static func json(rootHash: String = rootHash, signature: String = "MIIBAA==", fingerprint: String? = nil) -> String {
        var text = "{\"rootHash\":\"\(rootHash)\",\"signature\":\"\(signature)\""
        if let fingerprint { text += ",\"certificateFingerprint\":\"\(fingerprint)\"" }
        return text + "}"
    }

    static func padded(_ text: String, to size: Int = 4096) -> [UInt8] {
        var bytes = Array(text.utf8)
        bytes += [UInt8](repeating: 0, count: max(0, size - bytes.count))
        return bytes
    }

    @Test func parsesPaddedJSON() throws {
        let fingerprint = String(repeating: "ab", count: 32)
        let parsed = try VeritySignatureJSON.parse(Self.padded(Self.json(fingerprint: fingerprint), to: 16384))
        #expect(VerityHex.encode(parsed.rootHash) == Self.rootHash)
        #expect(parsed.signature == [0x30, 0x82, 0x01, 0x00])
        #expect(parsed.certificateFingerprint.map { VerityHex.encode($0) } == fingerprint)
    }

    @Test("more than 4 MiB is refused")
    func oversize() {
        let bytes = Self.padded(Self.json(), to: 4 * 1024 * 1024 + 4096)
        #expect(throws: VeritySignatureJSON.Error.tooLarge(bytes.count)) { try VeritySignatureJSON.parse(bytes) }
        // Exactly 4 MiB is still accepted.
        #expect(throws: Never.self) { try VeritySignatureJSON.parse(Self.padded(Self.json(), to: 4 * 1024 * 1024)) }
    }

    @Test("a non-zero byte after the NUL padding began is refused")
    func trailingGarbage() {
        var bytes = Self.padded(Self.json())
        bytes[4000] = UInt8(ascii: "x")
        #expect(throws: VeritySignatureJSON.Error.trailingGarbage(offset: 4000)) { try VeritySignatureJSON.parse(bytes) }
    }

    @Test("missing or malformed fields are refused", arguments: [
        "{\"signature\":\"MIIBAA==\"}",
        "{\"rootHash\":\"\(rootHash)\"}",
        "{\"rootHash\":\"xyz\",\"signature\":\"MIIBAA==\"}",
        "{\"rootHash\":12,\"signature\":\"MIIBAA==\"}",
        "{\"rootHash\":\"\(rootHash)\",\"signature\":\"%%%\"}",
        "{\"rootHash\":\"\(rootHash)\",\"signature\":\"MIIBAA==\",\"certificateFingerprint\":\"abc\"}",
        "[1,2,3]",
        "{\"rootHash\":",
        "",
    ])
    func malformed(_ text: String) {
        #expect(throws: VeritySignatureJSON.Error.self) { try VeritySignatureJSON.parse(Self.padded(text)) }
    }

    // MARK: PKCS#7 check

    @Test("a signature by a trusted certificate is accepted, naming the signer")
    func trustedSigner() async throws {
        try Privileged.require(.tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verity-sig")
        let (cert, key) = try Self.makeCertificate(in: dir, name: "trusted-signer")
        let signature = try Self.sign(Self.rootHash, cert: cert, key: key, in: dir)
        let keyring = try Self.keyring([cert], in: dir)
        let signer = try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring)
        #expect(signer.contains("trusted-signer"))
    }

    /// Found by the verity-cms fuzz target: the signature's certificate carries an RSA public
    /// key whose DER does not parse. swift-crypto 3.12.3 freed the key object twice on that path
    /// (heap corruption; AddressSanitizer aborts in the fuzz build, where this input is a seed,
    /// so scripts/fuzz.sh replays it under ASan on every run). Here: the plain build's answer, a
    /// signature that is not trusted, with the reason, and no trust from an empty keyring.
    @Test("a certificate whose RSA key does not parse: not trusted, the reason given")
    func malformedRSAKey() async throws {
        let path = Fixtures.repositoryPath("../fuzz/corpus/verity-cms/regression-rsa-key-freed-twice")
        let der = try #require(FileManager.default.contents(atPath: path).map { Array($0) }, "\(path) missing")
        let dir = try TemporaryDirectory(prefix: "verity-bad-key")
        let keyring = try Self.keyring([], in: dir)
        for _ in 0..<3 {  // the same object path again, as a long-running caller would
            let verdict = await VeritySignatureCheck.evaluate(rootHashHex: Self.rootHash, pkcs7DER: der, keyringDirectory: keyring)
            guard case .untrusted(_, let reason) = verdict else {
                Issue.record("trusted with an empty keyring: \(verdict)")
                return
            }
            #expect(!reason.isEmpty)
        }
    }

    /// Found by the verity-cms fuzz target: a certificate time with 61 seconds (which swift-asn1
    /// accepts) made swift-certificates 1.21.1 trap on an assert while turning it into a date,
    /// so a hostile signature partition crashed a debug build. The input is the fixture's
    /// signature with its certificate's notBefore seconds set to 61, kept as a fuzz seed.
    @Test("a certificate time of 61 seconds: refused with the reason, no trap")
    func certificateTimeOf61Seconds() async throws {
        try Privileged.require(.tool("openssl"))
        let path = Fixtures.repositoryPath("../fuzz/corpus/verity-cms/regression-certificate-time-61-seconds")
        let der = try #require(FileManager.default.contents(atPath: path).map { Array($0) }, "\(path) missing")
        let dir = try TemporaryDirectory(prefix: "verity-61-seconds")
        let (cert, _) = try Self.makeCertificate(in: dir, name: "some-signer")
        let keyring = try Self.keyring([cert], in: dir)
        await #expect(throws: VeritySignatureCheck.Error.invalidSignature("a certificate time (261203102361Z) has 61 seconds")) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: der, keyringDirectory: keyring)
        }
        let verdict = await VeritySignatureCheck.evaluate(rootHashHex: Self.rootHash, pkcs7DER: der, keyringDirectory: keyring)
        #expect(verdict == .untrusted(signer: nil, reason: "root hash signature is invalid: a certificate time (261203102361Z) has 61 seconds"))
    }

    @Test("a signature by a certificate not in the keyring is refused")
    func untrustedSigner() async throws {
        try Privileged.require(.tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verity-untrusted")
        let (trusted, _) = try Self.makeCertificate(in: dir, name: "trusted")
        let (rogue, rogueKey) = try Self.makeCertificate(in: dir, name: "rogue")
        let signature = try Self.sign(Self.rootHash, cert: rogue, key: rogueKey, in: dir)
        let keyring = try Self.keyring([trusted], in: dir)
        let error = await #expect(throws: VeritySignatureCheck.Error.self) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring)
        }
        guard case .untrustedSigner(let signer, _)? = error else {
            Issue.record("expected untrustedSigner, got \(String(describing: error))")
            return
        }
        #expect(signer.contains("rogue"))
    }

    @Test("a valid signature over a different root hash is refused")
    func otherContent() async throws {
        try Privileged.require(.tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verity-other")
        let (cert, key) = try Self.makeCertificate(in: dir, name: "signer")
        let signature = try Self.sign(String(Self.rootHash.reversed()), cert: cert, key: key, in: dir)
        let keyring = try Self.keyring([cert], in: dir)
        await #expect(throws: VeritySignatureCheck.Error.self) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring)
        }
    }

    @Test("the certificate fingerprint must name the signer in the keyring")
    func fingerprint() async throws {
        try Privileged.require(.tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verity-fp")
        let (cert, key) = try Self.makeCertificate(in: dir, name: "signer")
        let (other, _) = try Self.makeCertificate(in: dir, name: "other")
        let signature = try Self.sign(Self.rootHash, cert: cert, key: key, in: dir)
        let keyring = try Self.keyring([cert, other], in: dir)
        let trusted = try VeritySignatureCheck.loadKeyring(keyring)
        #expect(trusted.count == 2)
        let signerPrint = try #require(trusted.first { $0.path.hasSuffix("0.pem") }).fingerprint
        let otherPrint = try #require(trusted.first { $0.path.hasSuffix("1.pem") }).fingerprint
        // Matches openssl's own SHA-256 fingerprint of the DER certificate.
        let openssl = try Tool.run("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]).stdout
        #expect(openssl.replacingOccurrences(of: ":", with: "").lowercased().contains(VerityHex.encode(signerPrint)))

        _ = try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring,
                                                 certificateFingerprint: signerPrint)
        await #expect(throws: VeritySignatureCheck.Error.self) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring,
                                                 certificateFingerprint: otherPrint)
        }
        await #expect(throws: VeritySignatureCheck.Error.self) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: signature, keyringDirectory: keyring,
                                                 certificateFingerprint: [UInt8](repeating: 7, count: 32))
        }
    }

    @Test("an empty or missing keyring is an error, not a pass")
    func noKeyring() async throws {
        let dir = try TemporaryDirectory(prefix: "verity-nokeys")
        await #expect(throws: VeritySignatureCheck.Error.noKeyring(dir.appending("absent"))) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: [0x30, 0], keyringDirectory: dir.appending("absent"))
        }
        await #expect(throws: VeritySignatureCheck.Error.noTrustedCertificates(dir.path)) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: [0x30, 0], keyringDirectory: dir.path)
        }
    }

    @Test("garbage instead of PKCS#7 is refused")
    func garbageSignature() async throws {
        try Privileged.require(.tool("openssl"))
        let dir = try TemporaryDirectory(prefix: "verity-garbage")
        let (cert, _) = try Self.makeCertificate(in: dir, name: "signer")
        let keyring = try Self.keyring([cert], in: dir)
        await #expect(throws: VeritySignatureCheck.Error.self) {
            try await VeritySignatureCheck.check(rootHashHex: Self.rootHash, pkcs7DER: [0x30, 0x03, 1, 2, 3], keyringDirectory: keyring)
        }
    }
}
