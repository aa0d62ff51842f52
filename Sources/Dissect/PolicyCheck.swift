import Foundation

extension DissectedImage {
    /// How a partition is protected, in image-policy terms.
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
    /// policy's error naming the designator that does not comply.
    ///
    /// "signed" counts only when the signature verifies against the trusted certificates in
    /// `keyringDirectory`; an untrusted or broken signature makes the partition plain "verity".
    public func applying(_ policy: ImagePolicy, keyringDirectory: String = VeritySignatureCheck.defaultKeyringDirectory) async throws -> DissectedImage {
        var result = self
        for designator in PartitionDesignator.allCases {
            guard let p = partition(designator) else {
                try policy.check(designator: designator.rawValue, protection: .absent)
                continue
            }
            var protection = protection(of: p)
            if protection == .signed {
                let info = verity.hash(for: designator.rawValue)
                if let hash = info.hash, let signature = info.signature,
                   (try? await VeritySignatureCheck.check(rootHashHex: VerityHex.encode(hash), pkcs7DER: signature,
                                                          keyringDirectory: keyringDirectory, certificateFingerprint: info.fingerprint)) != nil {
                    protection = .signed
                } else {
                    protection = .verity
                    result.warnings.append("\(designator.rawValue): root hash signature is not from a trusted certificate (\(keyringDirectory)): treated as unsigned verity")
                }
            }
            let use = try policy.check(designator: designator.rawValue, protection: protection,
                                       readOnly: p.readOnly, growfs: p.growFileSystem)
            if use == .unused {
                result.partitions.removeAll { $0.designator == designator }
                result.warnings.append("\(designator.rawValue): left unused by the image policy")
            }
            // A policy that allows verity data to be used unprotected changes nothing: the mount
            // still verifies when a root hash is known (stricter than asked, never weaker).
        }
        return result
    }
}
