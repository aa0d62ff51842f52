import Foundation
import LinuxSystem

/// Where the root hash / signature / hash tree of an image were found (FORMATS.md §2 order).
/// Each `...Source` says where its value came from: "option", "xattr user.verity.roothash",
/// "sidecar /path/image.roothash", "signature partition root-verity-sig".
public struct VeritySettings: Sendable, Codable, Equatable {
    public var rootHash: [UInt8]?
    public var rootHashSource: String?
    public var rootHashSignature: [UInt8]?
    public var signatureSource: String?
    /// SHA-256 of the signing certificate, from the signature partition JSON.
    public var rootHashCertificateFingerprint: [UInt8]?
    /// External hash tree file (`--verity-data=` or the `.verity` sidecar).
    public var verityDataPath: String?
    public var verityDataSource: String?
    public var usrHash: [UInt8]?
    public var usrHashSource: String?
    public var usrHashSignature: [UInt8]?
    public var usrSignatureSource: String?
    public var usrHashCertificateFingerprint: [UInt8]?

    public init() {}

    /// The hash, signature and their sources for "root" or "usr".
    public func hash(for designator: String) -> (hash: [UInt8]?, source: String?, signature: [UInt8]?, signatureSource: String?, fingerprint: [UInt8]?) {
        designator == "usr"
            ? (usrHash, usrHashSource, usrHashSignature, usrSignatureSource, usrHashCertificateFingerprint)
            : (rootHash, rootHashSource, rootHashSignature, signatureSource, rootHashCertificateFingerprint)
    }
}

/// Explicit verity options as a user gives them on the command line.
public struct ExplicitVerityOptions: Sendable, Equatable {
    /// Hex root hash of the root partition (`--root-hash=`).
    public var rootHash: String?
    /// `--root-hash-sig=`: a path to a DER PKCS#7 file, or `base64:` followed by the signature.
    public var rootHashSignature: String?
    /// `--verity-data=`: a file holding the hash tree (with its superblock).
    public var verityData: String?
    /// Hex root hash of the /usr partition (`--usr-hash=`).
    public var usrHash: String?
    /// Signature for the /usr root hash (path or `base64:`).
    public var usrHashSignature: String?

    public init(rootHash: String? = nil, rootHashSignature: String? = nil, verityData: String? = nil,
                usrHash: String? = nil, usrHashSignature: String? = nil) {
        self.rootHash = rootHash
        self.rootHashSignature = rootHashSignature
        self.verityData = verityData
        self.usrHash = usrHash
        self.usrHashSignature = usrHashSignature
    }
}

public enum VerityDiscovery {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case badHex(source: String)
        case shortHash(source: String, bytes: Int)
        case emptySignature(source: String)
        case badBase64(source: String)
        case unreadable(path: String, reason: String)
        case rootHashConflict(designator: String, partition: String, configured: String, configuredSource: String)

        public var description: String {
            switch self {
            case .badHex(let source):
                return "root hash from \(source) is not hex"
            case .shortHash(let source, let bytes):
                return "root hash from \(source) is \(bytes) bytes, at least 16 are needed"
            case .emptySignature(let source):
                return "root hash signature from \(source) is empty"
            case .badBase64(let source):
                return "root hash signature from \(source) is not valid base64"
            case .unreadable(let path, let reason):
                return "cannot read \(path): \(reason)"
            case .rootHashConflict(let designator, let partition, let configured, let configuredSource):
                return "\(designator) hash in the \(designator)-verity-sig partition (\(partition)) differs from the one from \(configuredSource) (\(configured))"
            }
        }
    }

    /// Sidecar files are named after the image without a final `.raw` (systemd's
    /// build_auxiliary_path): foo.raw -> foo.roothash, foo.img -> foo.img.roothash.
    public static func sidecarPath(imagePath: String, suffix: String) -> String {
        let base = imagePath.hasSuffix(".raw") ? String(imagePath.dropLast(4)) : imagePath
        return base + suffix
    }

    /// Option, xattr user.verity.roothash/usrhash, sidecars (<image minus .raw>.roothash, .roothash.p7s,
    /// .verity, .usrhash, .usrhash.p7s). Block devices skip sidecars (and xattrs, which device
    /// nodes do not carry for images).
    public static func discover(imagePath: String, isBlockDevice: Bool, explicit: ExplicitVerityOptions) throws -> VeritySettings {
        var settings = VeritySettings()

        // 1. Explicit options.
        if let text = explicit.rootHash {
            settings.rootHash = try parseHash(text, source: "option --root-hash")
            settings.rootHashSource = "option"
        }
        if let value = explicit.rootHashSignature {
            settings.rootHashSignature = try loadSignature(value, option: "--root-hash-sig")
            settings.signatureSource = value.hasPrefix("base64:") ? "option" : "option \(value)"
        }
        if let path = explicit.verityData {
            guard FileManager.default.fileExists(atPath: path) else {
                throw Error.unreadable(path: path, reason: "no such file (--verity-data)")
            }
            settings.verityDataPath = path
            settings.verityDataSource = "option"
        }
        if let text = explicit.usrHash {
            settings.usrHash = try parseHash(text, source: "option --usr-hash")
            settings.usrHashSource = "option"
        }
        if let value = explicit.usrHashSignature {
            settings.usrHashSignature = try loadSignature(value, option: "--usr-hash-sig")
            settings.usrSignatureSource = value.hasPrefix("base64:") ? "option" : "option \(value)"
        }
        if isBlockDevice { return settings }

        // 2.-4. xattr, then sidecar, for root and then for /usr; only what is still missing.
        if settings.rootHash == nil {
            if let (hash, source) = try lookHash(imagePath: imagePath, xattr: "user.verity.roothash", suffix: ".roothash") {
                settings.rootHash = hash
                settings.rootHashSource = source
            }
        }
        if settings.rootHash != nil, settings.rootHashSignature == nil {
            let path = sidecarPath(imagePath: imagePath, suffix: ".roothash.p7s")
            if let signature = try readSidecar(path) {
                guard !signature.isEmpty else { throw Error.emptySignature(source: "sidecar \(path)") }
                settings.rootHashSignature = signature
                settings.signatureSource = "sidecar \(path)"
            }
        }
        if settings.verityDataPath == nil {
            let path = sidecarPath(imagePath: imagePath, suffix: ".verity")
            if FileManager.default.fileExists(atPath: path) {
                settings.verityDataPath = path
                settings.verityDataSource = "sidecar \(path)"
            }
        }
        if settings.usrHash == nil {
            if let (hash, source) = try lookHash(imagePath: imagePath, xattr: "user.verity.usrhash", suffix: ".usrhash") {
                settings.usrHash = hash
                settings.usrHashSource = source
            }
        }
        if settings.usrHash != nil, settings.usrHashSignature == nil {
            let path = sidecarPath(imagePath: imagePath, suffix: ".usrhash.p7s")
            if let signature = try readSidecar(path) {
                guard !signature.isEmpty else { throw Error.emptySignature(source: "sidecar \(path)") }
                settings.usrHashSignature = signature
                settings.usrSignatureSource = "sidecar \(path)"
            }
        }
        return settings
    }

    /// Merges the embedded signature partition JSON (rootHash/signature/certificateFingerprint);
    /// error if it contradicts a hash found earlier (option, xattr or sidecar). As in systemd, a
    /// hash and signature both already known leave the partition unused.
    public static func merge(signaturePartition: VeritySignatureJSON, into settings: inout VeritySettings, designator: String) throws {
        let isUsr = designator == "usr"
        let current = settings.hash(for: designator)
        if current.hash != nil && current.signature != nil { return }
        if let configured = current.hash, configured != signaturePartition.rootHash {
            throw Error.rootHashConflict(designator: isUsr ? "usr" : "root", partition: VerityHex.encode(signaturePartition.rootHash),
                                         configured: VerityHex.encode(configured), configuredSource: current.source ?? "option")
        }
        let source = "signature partition \(isUsr ? "usr" : "root")-verity-sig"
        if isUsr {
            if settings.usrHash == nil { settings.usrHash = signaturePartition.rootHash; settings.usrHashSource = source }
            settings.usrHashSignature = signaturePartition.signature
            settings.usrSignatureSource = source
            settings.usrHashCertificateFingerprint = signaturePartition.certificateFingerprint
        } else {
            if settings.rootHash == nil { settings.rootHash = signaturePartition.rootHash; settings.rootHashSource = source }
            settings.rootHashSignature = signaturePartition.signature
            settings.signatureSource = source
            settings.rootHashCertificateFingerprint = signaturePartition.certificateFingerprint
        }
    }

    /// Parses a hex root hash (at least 128 bits, as systemd requires).
    public static func parseHash(_ text: String, source: String) throws -> [UInt8] {
        guard let bytes = VerityHex.decode(text) else { throw Error.badHex(source: source) }
        guard bytes.count >= 16 else { throw Error.shortHash(source: source, bytes: bytes.count) }
        return bytes
    }

    /// `base64:DATA` or a path to a DER file.
    public static func loadSignature(_ value: String, option: String) throws -> [UInt8] {
        let bytes: [UInt8]
        if value.hasPrefix("base64:") {
            guard let data = Data(base64Encoded: String(value.dropFirst(7)), options: .ignoreUnknownCharacters) else {
                throw Error.badBase64(source: "option \(option)")
            }
            bytes = Array(data)
        } else {
            guard let data = try readSidecar(value) else { throw Error.unreadable(path: value, reason: "no such file (\(option))") }
            bytes = data
        }
        guard !bytes.isEmpty else { throw Error.emptySignature(source: "option \(option)") }
        return bytes
    }

    private static func lookHash(imagePath: String, xattr: String, suffix: String) throws -> ([UInt8], String)? {
        if let value = try? Xattr.getString(imagePath, name: xattr) {
            let source = "xattr \(xattr)"
            return (try parseHash(value, source: source), source)
        }
        let path = sidecarPath(imagePath: imagePath, suffix: suffix)
        guard let bytes = try readSidecar(path, limit: 4096) else { return nil }
        let source = "sidecar \(path)"
        // read_one_line_file: the first line only.
        let line = String(decoding: bytes.prefix { $0 != 0x0a }, as: UTF8.self)
        return (try parseHash(line, source: source), source)
    }

    /// The bytes of a small side file, or nil when it does not exist. Side files are tiny; a big
    /// one is refused rather than read whole.
    static func readSidecar(_ path: String, limit: Int = VeritySignatureJSON.maximumSize) throws -> [UInt8]? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        guard !isDirectory.boolValue else { throw Error.unreadable(path: path, reason: "is a directory") }
        let file: VerityFile
        do { file = try VerityFile(path: path) } catch { throw Error.unreadable(path: path, reason: "\(error)") }
        guard file.size <= UInt64(limit) else { throw Error.unreadable(path: path, reason: "larger than \(limit) bytes") }
        do { return try file.read(count: Int(file.size), at: 0) } catch { throw Error.unreadable(path: path, reason: "\(error)") }
    }
}
