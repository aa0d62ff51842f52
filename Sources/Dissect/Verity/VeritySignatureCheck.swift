import Crypto
import Foundation
import SwiftASN1
@_spi(CMS) import X509

/// Checks a root hash signature the way the kernel's dm-verity `root_hash_sig_key_desc` does, in
/// userspace: a PKCS#7 (CMS SignedData) detached signature over the lower-case hex root hash
/// (no newline; systemd-repart signs that string with PKCS7_DETACHED|PKCS7_NOATTR|PKCS7_BINARY and
/// includes the signer certificate), whose signer chains to a certificate in the keyring.
public enum VeritySignatureCheck {
    /// The keyring used when none is given, as systemd uses for verity signatures.
    public static let defaultKeyringDirectory = "/etc/verity.d"

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case noKeyring(String)
        case noTrustedCertificates(String)
        case fingerprintUnknown(fingerprint: String, directory: String)
        case fingerprintMismatch(expected: String, signer: String)
        case invalidSignature(String)
        case untrustedSigner(signer: String, directory: String)

        public var description: String {
            switch self {
            case .noKeyring(let dir):
                return "verity keyring \(dir) does not exist or is not a directory"
            case .noTrustedCertificates(let dir):
                return "verity keyring \(dir) holds no certificate (PEM or DER)"
            case .fingerprintUnknown(let fp, let dir):
                return "signing certificate fingerprint \(fp) matches no certificate in \(dir)"
            case .fingerprintMismatch(let expected, let signer):
                return "signature was made by \(signer), not by the certificate with fingerprint \(expected)"
            case .invalidSignature(let why):
                return "root hash signature is invalid: \(why)"
            case .untrustedSigner(let signer, let dir):
                return "root hash signature by \(signer) does not chain to a certificate in \(dir)"
            }
        }
    }

    /// A trusted certificate and the file it came from.
    public struct TrustedCertificate: Sendable {
        public var certificate: Certificate
        public var path: String
        /// SHA-256 of the DER encoding (what certificateFingerprint names).
        public var fingerprint: [UInt8]
    }

    /// PKCS#7 detached signature over the hex root hash, checked against trusted certs in
    /// `keyringDirectory`; when `certificateFingerprint` is given the signer must be that
    /// certificate and it must be in the keyring. Returns the signer's subject.
    public static func check(rootHashHex: String, pkcs7DER: [UInt8], keyringDirectory: String = defaultKeyringDirectory,
                             certificateFingerprint: [UInt8]? = nil) async throws -> String {
        var trusted = try loadKeyring(keyringDirectory)
        if let fingerprint = certificateFingerprint {
            trusted = trusted.filter { $0.fingerprint == fingerprint }
            guard !trusted.isEmpty else {
                throw Error.fingerprintUnknown(fingerprint: VerityHex.encode(fingerprint), directory: keyringDirectory)
            }
        }
        let content = Array(rootHashHex.lowercased().utf8)
        if let time = CertificateTimeGuard.unconvertibleTime(in: pkcs7DER) {
            throw Error.invalidSignature("a certificate time (\(time)) has 61 seconds")
        }
        let signatureBytes = Self.normalizingSignatureAlgorithm(pkcs7DER)
        let result = await CMS.isValidSignature(dataBytes: content, signatureBytes: signatureBytes,
                                                trustRoots: CertificateStore(trusted.map(\.certificate))) {
            VeritySigningPolicy()
        }
        switch result {
        case .success(let valid):
            let subject = valid.signer.subject.description
            if let fingerprint = certificateFingerprint, try derFingerprint(valid.signer) != fingerprint {
                throw Error.fingerprintMismatch(expected: VerityHex.encode(fingerprint), signer: subject)
            }
            return subject
        case .failure(.unableToValidateSigner(let failure)):
            throw Error.untrustedSigner(signer: failure.signer.subject.description, directory: keyringDirectory)
        case .failure(.invalidCMSBlock(let block)):
            throw Error.invalidSignature(block.reason)
        }
    }

    /// The trust decision for a root hash signature, without throwing: trusted (by whom), or not
    /// trusted with the signer (when the signature names one) and the reason. A missing or empty
    /// keyring makes every signature untrusted, but the signer is still named: a user deciding
    /// whether to add a certificate needs to know whose it would be.
    public enum Verdict: Sendable, Equatable {
        case trusted(signer: String)
        case untrusted(signer: String?, reason: String)
    }

    public static func evaluate(rootHashHex: String, pkcs7DER: [UInt8], keyringDirectory: String = defaultKeyringDirectory,
                                certificateFingerprint: [UInt8]? = nil) async -> Verdict {
        do {
            return .trusted(signer: try await check(rootHashHex: rootHashHex, pkcs7DER: pkcs7DER, keyringDirectory: keyringDirectory,
                                                    certificateFingerprint: certificateFingerprint))
        } catch Error.untrustedSigner(let signer, _) {
            return .untrusted(signer: signer, reason: "not signed by a certificate in \(keyringDirectory)")
        } catch {
            return .untrusted(signer: await signerSubject(rootHashHex: rootHashHex, pkcs7DER: pkcs7DER), reason: "\(error)")
        }
    }

    /// The signer's subject as the signature names it (validated against nothing): only for
    /// messages about a signature that is not trusted.
    static func signerSubject(rootHashHex: String, pkcs7DER: [UInt8]) async -> String? {
        guard CertificateTimeGuard.unconvertibleTime(in: pkcs7DER) == nil else { return nil }
        let result = await CMS.isValidSignature(dataBytes: Array(rootHashHex.lowercased().utf8),
                                                signatureBytes: normalizingSignatureAlgorithm(pkcs7DER),
                                                trustRoots: CertificateStore([])) { VeritySigningPolicy() }
        switch result {
        case .success(let valid): return valid.signer.subject.description
        case .failure(.unableToValidateSigner(let failure)): return failure.signer.subject.description
        case .failure(.invalidCMSBlock): return nil
        }
    }

    /// OpenSSL's PKCS7_sign (which systemd-repart and `openssl smime` use) writes two things
    /// swift-certificates' CMS verifier does not accept although RFC 5652/5754 allow them: the
    /// signer's algorithm as plain rsaEncryption (1.2.840.113549.1.1.1) instead of
    /// sha256WithRSAEncryption etc., and digest AlgorithmIdentifiers with NULL parameters. Neither
    /// identifier is covered by the signature (without signed attributes the RSA signature is over
    /// the content; with them, over the attributes, which are copied untouched), so the SignedData
    /// is re-encoded with the combined identifier and parameter-less digests. Certificates and
    /// everything else are copied byte for byte. Anything that does not have the expected shape is
    /// passed on unchanged and left to CMS to refuse.
    package static func normalizingSignatureAlgorithm(_ der: [UInt8]) -> [UInt8] {
        guard let root = try? DER.parse(der) else { return der }
        var serializer = DER.Serializer()
        do {
            try CMSRewrite.contentInfo(root, into: &serializer)
        } catch {
            return der
        }
        return serializer.serializedBytes
    }

    /// Every certificate in the directory's regular files (PEM, possibly several per file, or
    /// DER); other files are skipped.
    public static func loadKeyring(_ directory: String) throws -> [TrustedCertificate] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Error.noKeyring(directory)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var result: [TrustedCertificate] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = directory + "/" + name
            guard let bytes = try? VerityDiscovery.readSidecar(path, limit: 1 << 20) else { continue }
            // A keyring file is the administrator's, but still must not trap (CertificateTimeGuard).
            for certificate in parseCertificates(bytes) where !hasUnconvertibleTime(certificate) {
                guard let fingerprint = try? derFingerprint(certificate) else { continue }
                result.append(TrustedCertificate(certificate: certificate, path: path, fingerprint: fingerprint))
            }
        }
        guard !result.isEmpty else { throw Error.noTrustedCertificates(directory) }
        return result
    }

    /// Certificates in PEM (any number of CERTIFICATE blocks) or one DER certificate.
    static func parseCertificates(_ bytes: [UInt8]) -> [Certificate] {
        if let text = String(bytes: bytes, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE-----") {
            let documents = (try? PEMDocument.parseMultiple(pemString: text)) ?? []
            return documents.filter { $0.discriminator == "CERTIFICATE" }.compactMap { try? Certificate(pemDocument: $0) }
        }
        if let certificate = try? Certificate(derEncoded: bytes) { return [certificate] }
        return []
    }

    static func hasUnconvertibleTime(_ certificate: Certificate) -> Bool {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(certificate)) != nil else { return true }
        return CertificateTimeGuard.unconvertibleTime(in: serializer.serializedBytes) != nil
    }

    /// SHA-256 of the certificate's DER encoding.
    public static func derFingerprint(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return Array(SHA256.hash(data: serializer.serializedBytes))
    }
}

/// What a signer chain must satisfy beyond valid signatures up to a trusted certificate. Like the
/// kernel's keyring check for dm-verity signatures, validity dates are not enforced (a signed image
/// must keep working after a test certificate expires); unlike a bare signature check, a
/// certificate that signs another one must be a CA (basic constraints) and, when it says how its
/// key may be used, allowed to sign certificates. A certificate trusted directly needs neither.
/// These are the critical extensions this policy understands; any other critical extension makes
/// the chain fail, as RFC 5280 requires.
struct VeritySigningPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [
        .X509ExtensionID.basicConstraints, .X509ExtensionID.keyUsage,
    ]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        let certificates = Array(chain)
        for issuer in certificates.dropFirst() {
            let constraints: BasicConstraints?
            let usage: KeyUsage?
            do {
                constraints = try issuer.extensions.basicConstraints
                usage = try issuer.extensions.keyUsage
            } catch {
                return .failsToMeetPolicy(reason: "certificate \(issuer.subject) has malformed extensions: \(error)")
            }
            guard case .isCertificateAuthority = constraints else {
                return .failsToMeetPolicy(reason: "certificate \(issuer.subject) signs another but is not a CA")
            }
            if let usage, !usage.keyCertSign {
                return .failsToMeetPolicy(reason: "certificate \(issuer.subject) may not sign certificates (key usage)")
            }
        }
        return .meetsPolicy
    }
}

/// The re-encoding behind `VeritySignatureCheck.normalizingSignatureAlgorithm`, one function per
/// ASN.1 structure of RFC 5652:
///
/// ```
/// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
/// SignedData  ::= SEQUENCE { version, digestAlgorithms SET OF AlgorithmIdentifier,
///                            encapContentInfo, certificates [0] IMPLICIT?, crls [1] IMPLICIT?,
///                            signerInfos SET OF SignerInfo }
/// SignerInfo  ::= SEQUENCE { version, sid, digestAlgorithm, signedAttrs [0] IMPLICIT?,
///                            signatureAlgorithm, signature OCTET STRING, unsignedAttrs [1] IMPLICIT? }
/// ```
enum CMSRewrite {
    struct Unexpected: Error {}

    static let rsaEncryption: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 1, 1]
    /// Digest OID -> the matching RSA signature OID.
    static let rsaWith: [ASN1ObjectIdentifier: ASN1ObjectIdentifier] = [
        [1, 3, 14, 3, 2, 26]: [1, 2, 840, 113_549, 1, 1, 5],                 // sha1WithRSAEncryption
        [2, 16, 840, 1, 101, 3, 4, 2, 1]: [1, 2, 840, 113_549, 1, 1, 11],    // sha256WithRSAEncryption
        [2, 16, 840, 1, 101, 3, 4, 2, 2]: [1, 2, 840, 113_549, 1, 1, 12],    // sha384WithRSAEncryption
        [2, 16, 840, 1, 101, 3, 4, 2, 3]: [1, 2, 840, 113_549, 1, 1, 13],    // sha512WithRSAEncryption
    ]

    static func children(_ node: ASN1Node) throws -> [ASN1Node] {
        guard case .constructed(let nodes) = node.content else { throw Unexpected() }
        return Array(nodes)
    }

    static func contentInfo(_ node: ASN1Node, into s: inout DER.Serializer) throws {
        let fields = try children(node)
        guard node.identifier == .sequence, fields.count == 2 else { throw Unexpected() }
        let explicit = try children(fields[1])
        guard explicit.count == 1 else { throw Unexpected() }
        try s.appendConstructedNode(identifier: .sequence) { s in
            s.serialize(fields[0])
            try s.appendConstructedNode(identifier: fields[1].identifier) { s in
                try signedData(explicit[0], into: &s)
            }
        }
    }

    static func signedData(_ node: ASN1Node, into s: inout DER.Serializer) throws {
        let fields = try children(node)
        guard node.identifier == .sequence, fields.count >= 4, fields[1].identifier == .set,
              let infos = fields.last, infos.identifier == .set else { throw Unexpected() }
        try s.appendConstructedNode(identifier: .sequence) { s in
            s.serialize(fields[0])
            try s.appendConstructedNode(identifier: .set) { s in
                for algorithm in try children(fields[1]) { try digestAlgorithm(algorithm, into: &s) }
            }
            for field in fields[2..<(fields.count - 1)] { s.serialize(field) }
            try s.appendConstructedNode(identifier: .set) { s in
                for info in try children(infos) { try signerInfo(info, into: &s) }
            }
        }
    }

    static func signerInfo(_ node: ASN1Node, into s: inout DER.Serializer) throws {
        let fields = try children(node)
        guard node.identifier == .sequence, fields.count >= 5 else { throw Unexpected() }
        let digestOID = try ASN1ObjectIdentifier(derEncoded: try children(fields[2]).first ?? fields[2])
        let signatureIndex = fields[3].identifier == .sequence ? 3 : 4
        try s.appendConstructedNode(identifier: .sequence) { s in
            for (i, field) in fields.enumerated() {
                switch i {
                case 2: try digestAlgorithm(field, into: &s)
                case signatureIndex: try signatureAlgorithm(field, digest: digestOID, into: &s)
                default: s.serialize(field)
                }
            }
        }
    }

    /// AlgorithmIdentifier { OID, NULL } -> { OID } (RFC 5754: absent parameters).
    static func digestAlgorithm(_ node: ASN1Node, into s: inout DER.Serializer) throws {
        let fields = try children(node)
        guard node.identifier == .sequence, let oid = fields.first else { throw Unexpected() }
        try s.appendConstructedNode(identifier: .sequence) { s in
            s.serialize(oid)
            for field in fields.dropFirst() where field.identifier != .null { s.serialize(field) }
        }
    }

    /// rsaEncryption -> shaNNNWithRSAEncryption for the signer's digest; others unchanged.
    static func signatureAlgorithm(_ node: ASN1Node, digest: ASN1ObjectIdentifier, into s: inout DER.Serializer) throws {
        let fields = try children(node)
        guard node.identifier == .sequence, let first = fields.first else { throw Unexpected() }
        let oid = try ASN1ObjectIdentifier(derEncoded: first)
        guard oid == rsaEncryption, let combined = rsaWith[digest] else {
            s.serialize(node)
            return
        }
        try s.appendConstructedNode(identifier: .sequence) { s in
            try s.serialize(combined)
            for field in fields.dropFirst() { s.serialize(field) }
        }
    }
}
