import Dissect
import Foundation

enum VerityInputs {
    /// The hash area's first 512 bytes: a superblock that parses round-trips through
    /// `serialized()` to the same bytes (every field checked, reserved bytes zero).
    static func superblock(_ bytes: [UInt8]) {
        guard let parsed = try? VeritySuperblock.parse(bytes) else { return }
        require(parsed.serialized() == Array(bytes.prefix(VeritySuperblock.size)), "superblock does not round-trip")
        require(VeritySuperblock.isValidBlockSize(parsed.dataBlockSize) && VeritySuperblock.isValidBlockSize(parsed.hashBlockSize)
                && parsed.dataBlocks > 0 && parsed.salt.count <= VeritySuperblock.maximumSaltSize, "superblock fields out of range")
    }

    /// A root-verity-sig partition: the JSON parser, then (as dissect does with what it returns)
    /// the PKCS#7 rewrite and CMS parse of the signature, against an empty keyring.
    static func signatureJSON(_ bytes: [UInt8]) {
        guard let parsed = try? VeritySignatureJSON.parse(bytes) else { return }
        require([20, 32, 64].contains(parsed.rootHash.count) && parsed.signature.first == 0x30, "accepted a malformed root hash or signature")
        evaluate(rootHash: parsed.rootHash, signature: parsed.signature)
    }

    /// The DER signature alone (the JSON's base64 hides its structure from the fuzzer).
    static func cms(_ bytes: [UInt8]) {
        _ = VeritySignatureCheck.normalizingSignatureAlgorithm(bytes)
        evaluate(rootHash: [UInt8](repeating: 0xab, count: 32), signature: bytes)
    }

    private static func evaluate(rootHash: [UInt8], signature: [UInt8]) {
        let verdict = blocking {
            await VeritySignatureCheck.evaluate(rootHashHex: VerityHex.encode(rootHash), pkcs7DER: signature,
                                                keyringDirectory: "/nonexistent/imagectl-fuzz-keyring")
        }
        // Nothing is trusted without a keyring.
        if case .trusted = verdict { require(false, "a signature was trusted with an empty keyring") }
    }
}
