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
        // No policy beyond a valid chain: the kernel's keyring check ignores validity dates and
        // key usage too, and a signed image must keep booting after its test certificate expires.
        let result = await CMS.isValidSignature(dataBytes: content, signatureBytes: pkcs7DER,
                                                trustRoots: CertificateStore(trusted.map(\.certificate))) {}
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
            for certificate in parseCertificates(bytes) {
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

    /// SHA-256 of the certificate's DER encoding.
    public static func derFingerprint(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return Array(SHA256.hash(data: serializer.serializedBytes))
    }
}
