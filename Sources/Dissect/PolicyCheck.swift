import Foundation

/// How a root or usr partition ends up protected once the root hash signature has been judged:
/// what `dissect`, `verify`, the runners and the machine record report.
public enum VerityOutcome: String, Sendable, Codable {
    /// Verity against a root hash whose signature is by a certificate in the keyring.
    case signedAndTrusted = "signed-and-trusted"
    /// Verity against the root hash, no trusted signature (none, or one by an unknown signer).
    case verityOnly = "verity-only"
    /// No verity (no hash tree, or no root hash for it).
    case unprotected
}

/// The trust decision for one data partition (root or usr).
public struct VerityTrust: Sendable, Codable, Equatable {
    public var designator: String
    public var outcome: VerityOutcome
    /// Who signed the root hash, when there is a signature that names its signer.
    public var signer: String?
    /// Why a signature present was not trusted.
    public var untrustedReason: String?

    public init(designator: String, outcome: VerityOutcome, signer: String? = nil, untrustedReason: String? = nil) {
        self.designator = designator
        self.outcome = outcome
        self.signer = signer
        self.untrustedReason = untrustedReason
    }

    /// The warning a runner prints when a signature is not trusted but the policy lets the
    /// partition be used as plain verity; nil otherwise.
    public var warning: String? {
        guard outcome == .verityOnly, let untrustedReason else { return nil }
        return "\(designator): the root hash signature by \(signer ?? "an unnamed signer") is not trusted (\(untrustedReason)); using the partition with verity against its root hash only"
    }

    /// One line for humans: "signed-and-trusted (by CN=...)", "verity-only (signature by CN=...
    /// not trusted: ...)", "unprotected".
    public var summary: String {
        switch outcome {
        case .signedAndTrusted: return "signed-and-trusted" + (signer.map { " (by \($0))" } ?? "")
        case .verityOnly:
            guard let untrustedReason else { return "verity-only (no signature)" }
            return "verity-only (signature by \(signer ?? "an unnamed signer") not trusted: \(untrustedReason))"
        case .unprotected: return "unprotected"
        }
    }
}

extension DissectedImage {
    /// How a partition is protected, in image-policy terms, before any signature is judged.
    public func protection(of p: DissectedPartition) -> PartitionProtection {
        if p.isEncrypted { return .encrypted }
        switch p.verity {
        case .signed: return .signed
        case .yes, .external: return .verity
        case .no, nil: return .unprotected
        }
    }

    /// Checks every designator against `policy` (SECURITY.md 15: before anything is mounted) and
    /// returns the image with the partitions the policy says to leave unused removed. Throws the
    /// policy's error naming the designator that does not comply. Runners and verbs reach this
    /// through `ImageAdmission`.
    ///
    /// "signed" counts only when the signature verifies against the trusted certificates in
    /// `keyringDirectory`. systemd's rule (dissect-image.c): a signature that cannot be validated
    /// leaves the partition usable as plain verity against its root hash when the policy allows
    /// verity; only a policy that demands "signed" refuses it. The untrusted signature is then
    /// dropped from the result, so that what is mounted is checked against the root hash alone
    /// (as dm-verity without root_hash_sig_key_desc), with one warning naming the signer.
    public func applying(_ policy: ImagePolicy, keyringDirectory: String = VeritySignatureCheck.defaultKeyringDirectory) async throws -> DissectedImage {
        var result = self
        result.verityTrust = []
        for designator in PartitionDesignator.allCases {
            guard let p = partition(designator) else {
                try policy.check(designator: designator.rawValue, protection: .absent)
                continue
            }
            var protection = protection(of: p)
            var trust: VerityTrust?
            if designator == .root || designator == .usr, !p.isEncrypted {
                trust = VerityTrust(designator: designator.rawValue, outcome: protection == .unprotected ? .unprotected : .verityOnly)
                let info = verity.hash(for: designator.rawValue)
                // "signed" is earned below, by a trusted signature, never by the partition table.
                if protection == .signed { protection = .verity }
                if protection != .unprotected, let hash = info.hash, let signature = info.signature {
                    let verdict = await VeritySignatureCheck.evaluate(rootHashHex: VerityHex.encode(hash), pkcs7DER: signature,
                                                                      keyringDirectory: keyringDirectory, certificateFingerprint: info.fingerprint)
                    switch verdict {
                    case .trusted(let signer):
                        protection = .signed
                        trust = VerityTrust(designator: designator.rawValue, outcome: .signedAndTrusted, signer: signer)
                    case .untrusted(let signer, let reason):
                        protection = .verity
                        trust = VerityTrust(designator: designator.rawValue, outcome: .verityOnly, signer: signer, untrustedReason: reason)
                    }
                }
            }
            let use: PartitionProtection
            do {
                use = try policy.check(designator: designator.rawValue, protection: protection,
                                       readOnly: p.readOnly, growfs: p.growFileSystem)
            } catch ImagePolicy.Error.notAllowed(let name, let found, let allowed) where trust?.untrustedReason != nil {
                // Say why a signed image counts as unsigned: the policy wants a signature we cannot trust.
                throw ImagePolicy.Error.notAllowed(designator: name, found: "\(found) (\(trust?.summary ?? ""))", allowed: allowed)
            }
            if use == .unused {
                result.partitions.removeAll { $0.designator == designator }
                result.warnings.append("\(designator.rawValue): left unused by the image policy")
                continue
            }
            if let trust {
                result.verityTrust.append(trust)
                if trust.outcome == .verityOnly, trust.untrustedReason != nil {
                    result.dropSignature(of: designator)
                    if let warning = trust.warning { result.warnings.append(warning) }
                }
            }
            // A policy that allows verity data to be used unprotected changes nothing: the mount
            // still verifies when a root hash is known (stricter than asked, never weaker).
        }
        return result
    }

    /// Forgets an untrusted signature: the partition is plain verity from here on.
    mutating func dropSignature(of designator: PartitionDesignator) {
        if designator == .usr {
            verity.usrHashSignature = nil
            verity.usrHashCertificateFingerprint = nil
        } else {
            verity.rootHashSignature = nil
            verity.rootHashCertificateFingerprint = nil
        }
        // The partition's own `verity` stays what the image holds ("signed"), as systemd-dissect
        // shows it; `verityTrust` says what that signature is worth here.
    }
}
