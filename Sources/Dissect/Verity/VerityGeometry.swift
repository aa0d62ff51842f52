import Crypto
import Foundation

/// The hash functions dm-verity images use here. libcryptsetup accepts any kernel hash; images made
/// by veritysetup and systemd-repart use sha256, older ones sha1, some sha512.
public enum VerityHashAlgorithm: String, Sendable, Codable, CaseIterable {
    case sha1, sha256, sha512

    public init?(name: String) { self.init(rawValue: name.lowercased()) }

    public var digestSize: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        case .sha512: 64
        }
    }
}

/// Where each level of a hash tree lies, computed as libcryptsetup's `VERITY_create_or_verify_hash`
/// does (lib/verity/verity_hash.c):
///
/// ```
///  hash area:  [superblock, padded to a hash block][level L-1 (top)] ... [level 1][level 0]
///  bits            = floor(log2(hash_block_size / digest_size))     digests per hash block = 2^bits
///  L (levels)      = smallest L with (data_blocks - 1) >> (bits * L) == 0   (0 when one data block)
///  level i blocks  = ceil(data_blocks / 2^((i + 1) * bits))
///  digest slot     = type 1: digest size rounded up to a power of two (zero-padded);
///                    type 0: the digest size (digests packed)
///  hash block      = its digests, then zeros up to hash_block_size
///  digest          = type 1: H(salt || block)   type 0: H(block || salt)
///  root hash       = digest of the top-level block (of data block 0 when L = 0)
/// ```
/// The tree starts at the first hash block after the superblock: block
/// ceil((hash_offset + 512) / hash_block_size) of the hash device, or at hash_offset without one.
public struct VerityGeometry: Sendable, Equatable {
    public struct Level: Sendable, Equatable {
        /// Byte offset of the level's first block in the hash file.
        public var offset: UInt64
        public var blocks: UInt64
    }

    public var parameters: VeritySuperblock
    public var algorithm: VerityHashAlgorithm
    /// log2 of the digests per hash block.
    public var bits: Int
    /// Bytes each digest occupies in a hash block.
    public var digestSlot: Int
    /// levels[0] hashes the data blocks; levels.last is the top level (first on disk).
    public var levels: [Level]
    /// Byte offset in the hash file just past the last hash block.
    public var hashEnd: UInt64

    /// libcryptsetup's VERITY_MAX_LEVELS.
    static let maximumLevels = 63

    public enum Error: Swift.Error, CustomStringConvertible {
        case unsupportedAlgorithm(String)
        case badBlockSize(field: String, value: UInt32)
        case hashTypeUnsupported(UInt32)
        case saltTooLong(Int)
        case zeroDataBlocks
        case hashBlockTooSmall(hashBlockSize: UInt32, digestSize: Int)
        case tooManyLevels(Int)
        case overflow(String)

        public var description: String {
            switch self {
            case .unsupportedAlgorithm(let a): "verity: hash algorithm \"\(a)\" is not supported (sha1, sha256, sha512)"
            case .badBlockSize(let field, let value): "verity: \(field) \(value) is not a power of two from 512 to \(VeritySuperblock.maximumBlockSize)"
            case .hashTypeUnsupported(let t): "verity: hash type \(t) is not supported (0 or 1)"
            case .saltTooLong(let n): "verity: salt of \(n) bytes is longer than \(VeritySuperblock.maximumSaltSize)"
            case .zeroDataBlocks: "verity: the data area has no blocks"
            case .hashBlockTooSmall(let size, let digest): "verity: hash block size \(size) cannot hold a \(digest)-byte digest"
            case .tooManyLevels(let n): "verity: hash tree would need \(n) levels (at most \(VerityGeometry.maximumLevels))"
            case .overflow(let what): "verity: \(what) overflows 64 bits"
            }
        }
    }

    /// Computes the layout for `parameters` with the tree starting at byte `treeOffset` of the
    /// hash file. Every product is overflow-checked: the parameters may come from a hostile image.
    public init(parameters: VeritySuperblock, treeOffset: UInt64) throws {
        guard let algorithm = VerityHashAlgorithm(name: parameters.algorithm) else {
            throw Error.unsupportedAlgorithm(parameters.algorithm)
        }
        guard parameters.hashType <= 1 else { throw Error.hashTypeUnsupported(parameters.hashType) }
        guard VeritySuperblock.isValidBlockSize(parameters.dataBlockSize) else {
            throw Error.badBlockSize(field: "data block size", value: parameters.dataBlockSize)
        }
        guard VeritySuperblock.isValidBlockSize(parameters.hashBlockSize) else {
            throw Error.badBlockSize(field: "hash block size", value: parameters.hashBlockSize)
        }
        guard parameters.salt.count <= VeritySuperblock.maximumSaltSize else { throw Error.saltTooLong(parameters.salt.count) }
        guard parameters.dataBlocks > 0 else { throw Error.zeroDataBlocks }
        let perBlock = Int(parameters.hashBlockSize) / algorithm.digestSize
        guard perBlock >= 2 else {
            throw Error.hashBlockTooSmall(hashBlockSize: parameters.hashBlockSize, digestSize: algorithm.digestSize)
        }
        let bits = Int.bitWidth - 1 - perBlock.leadingZeroBitCount   // floor(log2)
        var levelCount = 0
        while bits * levelCount < 64 && (parameters.dataBlocks - 1) >> UInt64(bits * levelCount) != 0 {
            levelCount += 1
        }
        guard levelCount <= Self.maximumLevels else { throw Error.tooManyLevels(levelCount) }

        var sizes = [UInt64](repeating: 0, count: levelCount)
        for i in 0..<levelCount {
            let shift = (i + 1) * bits
            if shift >= 64 {
                sizes[i] = 1
            } else {
                let unit = UInt64(1) << UInt64(shift)
                // ceil(data_blocks / unit) without overflow.
                sizes[i] = parameters.dataBlocks / unit + (parameters.dataBlocks % unit == 0 ? 0 : 1)
            }
        }
        let hashBlockSize = UInt64(parameters.hashBlockSize)
        var levels = [Level](repeating: Level(offset: 0, blocks: 0), count: levelCount)
        var position = treeOffset
        for i in stride(from: levelCount - 1, through: 0, by: -1) {
            levels[i] = Level(offset: position, blocks: sizes[i])
            let (bytes, o1) = sizes[i].multipliedReportingOverflow(by: hashBlockSize)
            let (next, o2) = position.addingReportingOverflow(bytes)
            guard !o1, !o2 else { throw Error.overflow("the hash area size") }
            position = next
        }
        let (_, o3) = parameters.dataBlocks.multipliedReportingOverflow(by: UInt64(parameters.dataBlockSize))
        guard !o3 else { throw Error.overflow("the data area size") }

        self.parameters = parameters
        self.algorithm = algorithm
        self.bits = bits
        self.digestSlot = parameters.hashType == 1 ? Int(parameters.hashBlockSize) >> bits : algorithm.digestSize
        self.levels = levels
        self.hashEnd = position
    }

    /// Bytes of data the tree covers.
    public var dataBytes: UInt64 { parameters.dataBlocks * UInt64(parameters.dataBlockSize) }
    public var digestsPerBlock: Int { 1 << bits }

    /// Where the tree starts for a hash area at `hashOffset`: after the superblock (rounded up to
    /// a hash block, as libcryptsetup's VERITY_hash_offset_block does) or at `hashOffset` itself.
    public static func treeOffset(hashOffset: UInt64, hashBlockSize: UInt32, superblock: Bool) -> UInt64 {
        guard superblock else { return hashOffset }
        let size = UInt64(hashBlockSize)
        let end = hashOffset + UInt64(VeritySuperblock.size) + size - 1
        return end / size * size
    }
}
