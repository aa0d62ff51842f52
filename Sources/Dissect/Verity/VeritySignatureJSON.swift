import Foundation

/// The content of a root-verity-sig / usr-verity-sig partition as systemd-repart writes it: one
/// JSON object, padded with NULs to the partition size (a multiple of 4096 bytes).
///
/// ```
///  +-------------------------------------------------------------+-----------------+
///  | {"rootHash":"<hex>","signature":"<base64 DER PKCS#7>",       | NUL ... NUL     |
///  |  "certificateFingerprint":"<hex sha256 of the DER cert>"}   | (to the end)    |
///  +-------------------------------------------------------------+-----------------+
/// ```
/// Refused (as systemd's dissect does, plus the fingerprint check): more than 4 MiB, any non-NUL
/// byte after the first NUL, not a JSON object, rootHash or signature missing or malformed.
public struct VeritySignatureJSON: Sendable, Equatable {
    public var rootHash: [UInt8]
    /// DER PKCS#7 (CMS SignedData), detached, over the lower-case hex root hash.
    public var signature: [UInt8]
    /// SHA-256 of the signing certificate's DER encoding, when given.
    public var certificateFingerprint: [UInt8]?

    public static let maximumSize = 4 * 1024 * 1024

    public init(rootHash: [UInt8], signature: [UInt8], certificateFingerprint: [UInt8]? = nil) {
        self.rootHash = rootHash
        self.signature = signature
        self.certificateFingerprint = certificateFingerprint
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case tooLarge(Int)
        case empty
        case trailingGarbage(offset: Int)
        case notJSONObject(String)
        case missingField(String)
        case badField(String, String)

        public var description: String {
            switch self {
            case .tooLarge(let n):
                return "verity signature partition: \(n) bytes, larger than the 4 MiB limit"
            case .empty:
                return "verity signature partition: no JSON before the NUL padding"
            case .trailingGarbage(let offset):
                return "verity signature partition: non-zero byte at offset \(offset) after the NUL padding began"
            case .notJSONObject(let why):
                return "verity signature partition: not a JSON object (\(why))"
            case .missingField(let name):
                return "verity signature partition: JSON has no \"\(name)\" field"
            case .badField(let name, let why):
                return "verity signature partition: \"\(name)\" \(why)"
            }
        }
    }

    /// Parses the partition content (the JSON and its NUL padding).
    public static func parse(_ bytes: [UInt8]) throws -> VeritySignatureJSON {
        guard bytes.count <= maximumSize else { throw Error.tooLarge(bytes.count) }
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        if let garbage = bytes[end...].firstIndex(where: { $0 != 0 }) {
            throw Error.trailingGarbage(offset: garbage)
        }
        let text = bytes[..<end]
        guard text.contains(where: { !($0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09) }) else { throw Error.empty }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Data(text), options: []) as? [String: Any] else {
                throw Error.notJSONObject("top level is not an object")
            }
            object = parsed
        } catch let error as Error {
            throw error
        } catch {
            throw Error.notJSONObject("invalid JSON")
        }

        guard let rootValue = object["rootHash"] else { throw Error.missingField("rootHash") }
        guard let rootText = rootValue as? String else { throw Error.badField("rootHash", "is not a string") }
        guard let rootHash = VerityHex.decode(rootText), [20, 32, 64].contains(rootHash.count) else {
            throw Error.badField("rootHash", "is not a hex sha1/sha256/sha512 digest")
        }
        guard let signatureValue = object["signature"] else { throw Error.missingField("signature") }
        guard let signatureText = signatureValue as? String else { throw Error.badField("signature", "is not a string") }
        guard let signature = Data(base64Encoded: signatureText), !signature.isEmpty else {
            throw Error.badField("signature", "is not base64")
        }
        // DER SEQUENCE tag: a PKCS#7 ContentInfo starts with 0x30.
        guard signature.first == 0x30 else { throw Error.badField("signature", "is not a DER PKCS#7 structure") }
        var fingerprint: [UInt8]?
        if let value = object["certificateFingerprint"] {
            guard let text = value as? String else { throw Error.badField("certificateFingerprint", "is not a string") }
            guard let bytes = VerityHex.decode(text), bytes.count == 32 else {
                throw Error.badField("certificateFingerprint", "is not a hex SHA-256 digest")
            }
            fingerprint = bytes
        }
        return VeritySignatureJSON(rootHash: rootHash, signature: Array(signature), certificateFingerprint: fingerprint)
    }
}
