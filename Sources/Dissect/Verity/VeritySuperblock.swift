import Foundation

/// The dm-verity superblock that `veritysetup format` (libcryptsetup `lib/verity/verity.c`) writes
/// at the start of the hash area. The kernel never reads it: it only carries the parameters that
/// userspace passes on to the dm-verity table. It is not covered by the hash tree either, so every
/// field is checked here and reserved bytes must be zero (what libcryptsetup writes), which makes a
/// flipped bit anywhere but in the UUID visible.
///
/// ```
///   offset  size  field             notes
///  +-------+-----+-----------------+-------------------------------------------------
///  |     0 |   8 | signature       | "verity\0\0"
///  |     8 |   4 | version         | u32 LE, 1
///  |    12 |   4 | hash_type       | u32 LE, 0 = Chrome OS (H(block||salt)), 1 = normal
///  |    16 |  16 | uuid            | UUID of the hash device (not authenticated)
///  |    32 |  32 | algorithm       | NUL-padded ASCII, "sha1" / "sha256" / "sha512"
///  |    64 |   4 | data_block_size | u32 LE, power of two, 512 .. 512 KiB
///  |    68 |   4 | hash_block_size | u32 LE, power of two, 512 .. 512 KiB
///  |    72 |   8 | data_blocks     | u64 LE, > 0
///  |    80 |   2 | salt_size       | u16 LE, <= 256
///  |    82 |   6 | _pad1           | zero
///  |    88 | 256 | salt            | salt_size bytes used, rest zero
///  |   344 | 168 | _pad2           | zero
///  +-------+-----+-----------------+-------------------------------------------------
///    512 bytes in all; the hash tree starts at the first hash block after them.
/// ```
public struct VeritySuperblock: Sendable, Equatable {
    /// 0 = Chrome OS format (salt appended), 1 = normal format (salt prepended, padded digests).
    public var hashType: UInt32
    /// Lower-case hash name: "sha1", "sha256" or "sha512".
    public var algorithm: String
    public var dataBlockSize: UInt32
    public var hashBlockSize: UInt32
    public var dataBlocks: UInt64
    public var salt: [UInt8]
    public var uuid: UUID

    /// Size of the on-disk superblock.
    public static let size = 512
    /// Largest block size libcryptsetup accepts (`VERITY_BLOCK_SIZE_OK`: 512 * 1024).
    public static let maximumBlockSize: UInt32 = 512 * 1024
    public static let maximumSaltSize = 256
    static let signature: [UInt8] = Array("verity".utf8) + [0, 0]

    public init(hashType: UInt32 = 1, algorithm: String = "sha256", dataBlockSize: UInt32 = 4096,
                hashBlockSize: UInt32 = 4096, dataBlocks: UInt64, salt: [UInt8], uuid: UUID = UUID()) {
        self.hashType = hashType
        self.algorithm = algorithm
        self.dataBlockSize = dataBlockSize
        self.hashBlockSize = hashBlockSize
        self.dataBlocks = dataBlocks
        self.salt = salt
        self.uuid = uuid
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case tooShort(Int)
        case badSignature
        case unsupportedVersion(UInt32)
        case unsupportedHashType(UInt32)
        case unsupportedAlgorithm(String)
        case badBlockSize(field: String, value: UInt32)
        case zeroDataBlocks
        case saltTooLong(Int)
        case nonZeroReserved(field: String, offset: Int)

        public var description: String {
            switch self {
            case .tooShort(let n):
                return "verity superblock: only \(n) bytes, need \(VeritySuperblock.size)"
            case .badSignature:
                return "verity superblock: signature is not \"verity\" (no superblock at this offset?)"
            case .unsupportedVersion(let v):
                return "verity superblock: version is \(v), only 1 is defined"
            case .unsupportedHashType(let t):
                return "verity superblock: hash_type is \(t), must be 0 (Chrome OS) or 1 (normal)"
            case .unsupportedAlgorithm(let a):
                return "verity superblock: algorithm \"\(a)\" is not supported (sha1, sha256, sha512)"
            case .badBlockSize(let field, let value):
                return "verity superblock: \(field) is \(value), must be a power of two from 512 to \(VeritySuperblock.maximumBlockSize)"
            case .zeroDataBlocks:
                return "verity superblock: data_blocks is 0"
            case .saltTooLong(let n):
                return "verity superblock: salt_size is \(n), at most \(VeritySuperblock.maximumSaltSize)"
            case .nonZeroReserved(let field, let offset):
                return "verity superblock: \(field) has a non-zero byte at offset \(offset)"
            }
        }
    }

    /// Parses and validates the 512-byte superblock; each error names the offending field.
    public static func parse(_ bytes: [UInt8]) throws -> VeritySuperblock {
        guard bytes.count >= size else { throw Error.tooShort(bytes.count) }
        let reader = VerityLittleEndian(bytes)
        guard Array(bytes[0..<8]) == signature else { throw Error.badSignature }
        let version = reader.u32(at: 8)
        guard version == 1 else { throw Error.unsupportedVersion(version) }
        let hashType = reader.u32(at: 12)
        guard hashType <= 1 else { throw Error.unsupportedHashType(hashType) }
        let uuidBytes = Array(bytes[16..<32])
        let algorithmField = bytes[32..<64]
        let nameBytes = algorithmField.prefix { $0 != 0 }
        // Bytes after the terminating NUL must be NULs too (libcryptsetup pads with zero).
        if let junk = algorithmField.dropFirst(nameBytes.count).firstIndex(where: { $0 != 0 }) {
            throw Error.nonZeroReserved(field: "algorithm", offset: junk)
        }
        let name = String(decoding: nameBytes, as: UTF8.self)
        guard VerityHashAlgorithm(name: name) != nil else { throw Error.unsupportedAlgorithm(name) }
        let dataBlockSize = reader.u32(at: 64)
        guard isValidBlockSize(dataBlockSize) else { throw Error.badBlockSize(field: "data_block_size", value: dataBlockSize) }
        let hashBlockSize = reader.u32(at: 68)
        guard isValidBlockSize(hashBlockSize) else { throw Error.badBlockSize(field: "hash_block_size", value: hashBlockSize) }
        let dataBlocks = reader.u64(at: 72)
        guard dataBlocks > 0 else { throw Error.zeroDataBlocks }
        let saltSize = Int(reader.u16(at: 80))
        guard saltSize <= maximumSaltSize else { throw Error.saltTooLong(saltSize) }
        if let junk = bytes[82..<88].firstIndex(where: { $0 != 0 }) {
            throw Error.nonZeroReserved(field: "_pad1", offset: junk)
        }
        if let junk = bytes[(88 + saltSize)..<344].firstIndex(where: { $0 != 0 }) {
            throw Error.nonZeroReserved(field: "salt (beyond salt_size)", offset: junk)
        }
        if let junk = bytes[344..<512].firstIndex(where: { $0 != 0 }) {
            throw Error.nonZeroReserved(field: "_pad2", offset: junk)
        }
        let uuid = UUID(uuid: (uuidBytes[0], uuidBytes[1], uuidBytes[2], uuidBytes[3], uuidBytes[4], uuidBytes[5],
                               uuidBytes[6], uuidBytes[7], uuidBytes[8], uuidBytes[9], uuidBytes[10], uuidBytes[11],
                               uuidBytes[12], uuidBytes[13], uuidBytes[14], uuidBytes[15]))
        return VeritySuperblock(hashType: hashType, algorithm: name, dataBlockSize: dataBlockSize,
                                hashBlockSize: hashBlockSize, dataBlocks: dataBlocks,
                                salt: Array(bytes[88..<(88 + saltSize)]), uuid: uuid)
    }

    /// The 512 bytes libcryptsetup would write for these parameters (used by tests and to build
    /// hash areas; the parser round-trips it).
    public func serialized() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        out.replaceSubrange(0..<8, with: Self.signature)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            for i in 0..<(T.bitWidth / 8) { out[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
        put(UInt32(1), at: 8)
        put(hashType, at: 12)
        let u = uuid.uuid
        let uuidBytes = [u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15]
        out.replaceSubrange(16..<32, with: uuidBytes)
        let name = Array(algorithm.utf8.prefix(31))
        out.replaceSubrange(32..<(32 + name.count), with: name)
        put(dataBlockSize, at: 64)
        put(hashBlockSize, at: 68)
        put(dataBlocks, at: 72)
        let saltBytes = Array(salt.prefix(Self.maximumSaltSize))
        put(UInt16(saltBytes.count), at: 80)
        out.replaceSubrange(88..<(88 + saltBytes.count), with: saltBytes)
        return out
    }

    /// Block sizes libcryptsetup accepts: a power of two from 512 bytes to 512 KiB.
    public static func isValidBlockSize(_ value: UInt32) -> Bool {
        value >= 512 && value <= maximumBlockSize && value & (value &- 1) == 0
    }
}

/// Reads little-endian integers at fixed offsets of a buffer whose length the caller has checked.
struct VerityLittleEndian {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func u16(at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }
    func u32(at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in (0..<4).reversed() { value = value << 8 | UInt32(bytes[offset + i]) }
        return value
    }
    func u64(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }
}
