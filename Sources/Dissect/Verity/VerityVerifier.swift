import Crypto
import Foundation
import LinuxSystem
import ProgressReport
import Synchronization

/// One verity-protected area: the data range and the hash range (superblock at hashOffset).
/// Data and hash may live in the same file (a GPT image: two partitions) or in two files
/// (`veritysetup format DATA HASH`, a `.verity` sidecar).
public struct VerityTarget: Sendable, Equatable {
    public var dataPath: String
    public var dataOffset: UInt64
    public var dataSize: UInt64
    public var hashPath: String
    public var hashOffset: UInt64
    public var hashSize: UInt64
    /// Parameters given explicitly for a hash area without a superblock (veritysetup
    /// `--no-superblock`): the tree then starts at `hashOffset`. Nil reads the superblock.
    public var parameters: VeritySuperblock?

    public init(dataPath: String, dataOffset: UInt64 = 0, dataSize: UInt64, hashPath: String,
                hashOffset: UInt64 = 0, hashSize: UInt64, parameters: VeritySuperblock? = nil) {
        self.dataPath = dataPath
        self.dataOffset = dataOffset
        self.dataSize = dataSize
        self.hashPath = hashPath
        self.hashOffset = hashOffset
        self.hashSize = hashSize
        self.parameters = parameters
    }

    /// A data file and a hash file used whole (their sizes read from the files).
    public static func files(data: String, hash: String, parameters: VeritySuperblock? = nil) throws -> VerityTarget {
        let dataSize = try VerityFile(path: data).size
        let hashSize = try VerityFile(path: hash).size
        return VerityTarget(dataPath: data, dataSize: dataSize, hashPath: hash, hashSize: hashSize, parameters: parameters)
    }
}

/// Which part of a verity setup a failure is in.
public enum VerityArea: String, Sendable, Codable {
    case data, hash, superblock
}

/// Why verification failed; block failures name the first bad block (area, level, index, offset).
public enum VerityError: Swift.Error, CustomStringConvertible, Sendable {
    case superblock(path: String, offset: UInt64, VeritySuperblock.Error)
    case geometry(VerityGeometry.Error)
    case rootHashLength(expected: Int, got: Int)
    /// The top of the tree (the top-level hash block, or data block 0 when there is no tree)
    /// does not hash to the root hash.
    case rootHashMismatch(area: VerityArea, level: Int?, offset: UInt64, path: String, expected: [UInt8], computed: [UInt8])
    /// A block whose digest differs from the one stored in the level above.
    case blockMismatch(area: VerityArea, level: Int?, index: UInt64, offset: UInt64, path: String)
    /// Non-zero bytes where a hash block must hold zeros (digest padding or the block's tail).
    case nonZeroPadding(level: Int, index: UInt64, offset: UInt64, path: String)
    case areaTooSmall(area: VerityArea, needed: UInt64, available: UInt64, path: String)
    case areaOutsideFile(area: VerityArea, end: UInt64, fileSize: UInt64, path: String)

    public var description: String {
        switch self {
        case .superblock(let path, let offset, let error):
            return "\(error) (superblock at byte offset \(offset) of \(path))"
        case .geometry(let error):
            return error.description
        case .rootHashLength(let expected, let got):
            return "verity: root hash is \(got) bytes, the hash algorithm gives \(expected)"
        case .rootHashMismatch(let area, let level, let offset, let path, let expected, let computed):
            let what = area == .data
                ? "data block 0 (byte offset \(offset) of \(path), the only data block)"
                : "the top-level hash block (hash area, level \(level ?? 0), block 0, byte offset \(offset) of \(path))"
            return "verity: root hash mismatch: \(what) hashes to \(VerityHex.encode(computed)), expected \(VerityHex.encode(expected))"
        case .blockMismatch(let area, let level, let index, let offset, let path):
            switch area {
            case .data:
                return "verity: data block \(index) (byte offset \(offset) of \(path)) does not match its digest in hash level 0"
            default:
                let l = level ?? 0
                return "verity: hash area, level \(l), block \(index) (byte offset \(offset) of \(path)) does not match its digest in hash level \(l + 1)"
            }
        case .nonZeroPadding(let level, let index, let offset, let path):
            return "verity: hash area, level \(level), block \(index): non-zero padding at byte offset \(offset) of \(path)"
        case .areaTooSmall(let area, let needed, let available, let path):
            return "verity: \(area.rawValue) area of \(path) is \(available) bytes, the superblock needs \(needed)"
        case .areaOutsideFile(let area, let end, let fileSize, let path):
            return "verity: \(area.rawValue) area ends at byte \(end), past the end of \(path) (\(fileSize) bytes)"
        }
    }

    /// The failing block as (area, level, index, byte offset) when the error is about one block.
    public var badBlock: (area: VerityArea, level: Int?, index: UInt64, offset: UInt64)? {
        switch self {
        case .blockMismatch(let area, let level, let index, let offset, _): (area, level, index, offset)
        case .rootHashMismatch(let area, let level, let offset, _, _, _): (area, level, 0, offset)
        case .nonZeroPadding(let level, let index, let offset, _): (.hash, level, index, offset)
        case .superblock(_, let offset, _): (.superblock, nil, 0, offset)
        default: nil
        }
    }
}

/// What a verification checked and how fast.
public struct VerityReport: Sendable, Codable, Equatable {
    public var rootHash: String
    public var hashType: UInt32
    public var algorithm: String
    public var dataBlockSize: UInt32
    public var hashBlockSize: UInt32
    public var dataBlocks: UInt64
    public var salt: String
    public var superblock: Bool
    public var levels: Int
    /// Data blocks plus hash blocks hashed.
    public var blocksChecked: UInt64
    /// Bytes hashed (data and hash area).
    public var bytesChecked: UInt64
    public var seconds: Double
    public var megabytesPerSecond: Double
}

/// Userspace dm-verity: checks the whole hash tree against a root hash, hashing on all cores.
///
/// Written by hand over swift-crypto because libcryptsetup's `crypt_verity_verify` path
/// (`veritysetup verify`) is single-threaded and offers no way to name the failing level; the
/// layout follows libcryptsetup exactly (see `VerityGeometry`).
///
/// Order: the top block against the root hash, then each level against the verified level above
/// it, and the data last. A mismatch is therefore blamed on the block that is actually wrong (a
/// damaged hash block fails against its parent before any data block is compared with it).
public enum VerityVerifier {
    /// Full userspace verification on all cores; throws VerityError naming the first bad block.
    /// `progress` is told the total (data plus hash tree) and the bytes hashed as they are.
    public static func verify(_ target: VerityTarget, rootHash: [UInt8], progress: ProgressReporter? = nil) async throws -> VerityReport {
        let start = ContinuousClock.now
        let hashFile = try VerityFile(path: target.hashPath)
        let dataFile = target.dataPath == target.hashPath ? hashFile : try VerityFile(path: target.dataPath)
        try checkInside(.hash, offset: target.hashOffset, size: target.hashSize, file: hashFile)
        try checkInside(.data, offset: target.dataOffset, size: target.dataSize, file: dataFile)

        let parameters: VeritySuperblock
        if let explicit = target.parameters {
            parameters = explicit
        } else {
            parameters = try readSuperblock(hashFile, offset: target.hashOffset, areaSize: target.hashSize)
        }
        let geometry: VerityGeometry
        do {
            let treeOffset = VerityGeometry.treeOffset(hashOffset: target.hashOffset, hashBlockSize: parameters.hashBlockSize,
                                                       superblock: target.parameters == nil)
            geometry = try VerityGeometry(parameters: parameters, treeOffset: treeOffset)
        } catch let error as VerityGeometry.Error {
            throw VerityError.geometry(error)
        }
        guard rootHash.count == geometry.algorithm.digestSize else {
            throw VerityError.rootHashLength(expected: geometry.algorithm.digestSize, got: rootHash.count)
        }
        let hashNeeded = geometry.hashEnd - target.hashOffset
        guard hashNeeded <= target.hashSize else {
            throw VerityError.areaTooSmall(area: .hash, needed: hashNeeded, available: target.hashSize, path: target.hashPath)
        }
        guard geometry.dataBytes <= target.dataSize else {
            throw VerityError.areaTooSmall(area: .data, needed: geometry.dataBytes, available: target.dataSize, path: target.dataPath)
        }

        progress?.setTotal(geometry.dataBytes + (geometry.hashEnd - target.hashOffset))
        let counters: (blocks: UInt64, bytes: UInt64)
        switch geometry.algorithm {
        case .sha1: counters = try await run(Insecure.SHA1.self, geometry, target, hashFile, dataFile, rootHash, progress)
        case .sha256: counters = try await run(SHA256.self, geometry, target, hashFile, dataFile, rootHash, progress)
        case .sha512: counters = try await run(SHA512.self, geometry, target, hashFile, dataFile, rootHash, progress)
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return VerityReport(
            rootHash: VerityHex.encode(rootHash), hashType: parameters.hashType, algorithm: geometry.algorithm.rawValue,
            dataBlockSize: parameters.dataBlockSize, hashBlockSize: parameters.hashBlockSize,
            dataBlocks: parameters.dataBlocks, salt: VerityHex.encode(parameters.salt),
            superblock: target.parameters == nil, levels: geometry.levels.count,
            blocksChecked: counters.blocks, bytesChecked: counters.bytes, seconds: seconds,
            megabytesPerSecond: seconds > 0 ? Double(counters.bytes) / 1_000_000 / seconds : 0)
    }

    /// Reads and validates the superblock at `offset` of the hash file.
    static func readSuperblock(_ file: VerityFile, offset: UInt64, areaSize: UInt64) throws -> VeritySuperblock {
        guard areaSize >= UInt64(VeritySuperblock.size) else {
            throw VerityError.superblock(path: file.path, offset: offset, .tooShort(Int(areaSize)))
        }
        let bytes = try file.read(count: VeritySuperblock.size, at: offset)
        do {
            return try VeritySuperblock.parse(bytes)
        } catch let error as VeritySuperblock.Error {
            throw VerityError.superblock(path: file.path, offset: offset, error)
        }
    }

    private static func checkInside(_ area: VerityArea, offset: UInt64, size: UInt64, file: VerityFile) throws {
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, end <= file.size else {
            throw VerityError.areaOutsideFile(area: area, end: overflow ? .max : end, fileSize: file.size, path: file.path)
        }
    }

    /// Checks the top against the root hash, then every level top-down, then the data.
    private static func run<H: HashFunction>(
        _: H.Type, _ geometry: VerityGeometry, _ target: VerityTarget, _ hashFile: VerityFile,
        _ dataFile: VerityFile, _ rootHash: [UInt8], _ progress: ProgressReporter?
    ) async throws -> (blocks: UInt64, bytes: UInt64) {
        let p = geometry.parameters
        let hasher = VeritySaltedHasher<H>(salt: p.salt, hashType: p.hashType)
        let hashBlockSize = Int(p.hashBlockSize)

        // The top: the single top-level hash block, or data block 0 when there is no tree.
        let topArea: VerityArea
        let topOffset: UInt64
        let topSize: Int
        let topFile: VerityFile
        if let top = geometry.levels.last {
            (topArea, topOffset, topSize, topFile) = (.hash, top.offset, hashBlockSize, hashFile)
        } else {
            (topArea, topOffset, topSize, topFile) = (.data, target.dataOffset, Int(p.dataBlockSize), dataFile)
        }
        let topBlock = try topFile.read(count: topSize, at: topOffset)
        let topDigest = hasher.digest(topBlock[...])
        guard topDigest == rootHash else {
            throw VerityError.rootHashMismatch(area: topArea, level: geometry.levels.isEmpty ? nil : geometry.levels.count - 1,
                                               offset: topOffset, path: topFile.path, expected: rootHash,
                                               computed: Array(topDigest))
        }
        var blocks: UInt64 = 1
        var bytes = UInt64(topSize)

        // Each level (top-1 down to 0), then the data, against the level above it.
        for level in stride(from: geometry.levels.count - 1, through: 0, by: -1) {
            let parent = geometry.levels[level]
            let job: VerityLevelJob
            if level > 0 {
                let source = geometry.levels[level - 1]
                job = VerityLevelJob(area: .hash, sourceLevel: level - 1, source: hashFile, sourceOffset: source.offset,
                                     sourceBlockSize: hashBlockSize, sourceBlocks: source.blocks,
                                     parent: hashFile, parentLevel: level, parentOffset: parent.offset, parentBlocks: parent.blocks,
                                     geometry: geometry, progress: progress)
            } else {
                job = VerityLevelJob(area: .data, sourceLevel: nil, source: dataFile, sourceOffset: target.dataOffset,
                                     sourceBlockSize: Int(p.dataBlockSize), sourceBlocks: p.dataBlocks,
                                     parent: hashFile, parentLevel: 0, parentOffset: parent.offset, parentBlocks: parent.blocks,
                                     geometry: geometry, progress: progress)
            }
            try await job.run()
            blocks += job.sourceBlocks
            bytes += job.sourceBlocks * UInt64(job.sourceBlockSize)
        }
        return (blocks, bytes)
    }
}

/// H(salt || block) for hash type 1, H(block || salt) for type 0. The salt-prefixed state is
/// computed once and copied per block.
struct VeritySaltedHasher<H: HashFunction> {
    let base: H
    let suffix: [UInt8]

    init(salt: [UInt8], hashType: UInt32) {
        var base = H()
        if hashType == 1 {
            base.update(data: salt)
            suffix = []
        } else {
            suffix = salt
        }
        self.base = base
    }

    @inline(__always)
    func digest(_ block: ArraySlice<UInt8>) -> H.Digest {
        var h = base
        h.update(data: block)
        if !suffix.isEmpty { h.update(data: suffix) }
        return h.finalize()
    }
}

/// Verifies one level of blocks (hash blocks of level `sourceLevel`, or the data blocks) against
/// the digests stored in the level above, split into units of whole parent blocks that worker
/// tasks (one per core) take in order. The lowest failing block wins, so the report names the
/// first bad block whatever the scheduling.
struct VerityLevelJob: Sendable {
    var area: VerityArea
    var sourceLevel: Int?
    var source: VerityFile
    var sourceOffset: UInt64
    var sourceBlockSize: Int
    var sourceBlocks: UInt64
    var parent: VerityFile
    var parentLevel: Int
    var parentOffset: UInt64
    var parentBlocks: UInt64
    var geometry: VerityGeometry
    var progress: ProgressReporter?

    /// Source bytes a unit covers (about 8 MiB: a few units per core on small images, little
    /// scheduling overhead on big ones); reads go in 1 MiB chunks.
    static let unitBytes = 8 << 20
    static let chunkBytes = 1 << 20

    func run() async throws {
        let parentsPerUnit = UInt64(max(1, Self.unitBytes / (sourceBlockSize * geometry.digestsPerBlock)))
        let units = (parentBlocks + parentsPerUnit - 1) / parentsPerUnit
        let state = VerityLevelState()
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, Int(min(units, 64))))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    switch geometry.algorithm {
                    case .sha1: try worker(Insecure.SHA1.self, units: units, parentsPerUnit: parentsPerUnit, state: state)
                    case .sha256: try worker(SHA256.self, units: units, parentsPerUnit: parentsPerUnit, state: state)
                    case .sha512: try worker(SHA512.self, units: units, parentsPerUnit: parentsPerUnit, state: state)
                    }
                }
            }
            try await group.waitForAll()
        }
        if let failure = state.failure.withLock({ $0 }) { throw failure.error }
    }

    /// One worker: takes the next unit until none is left or an earlier failure decides.
    private func worker<H: HashFunction>(_: H.Type, units: UInt64, parentsPerUnit: UInt64, state: VerityLevelState) throws {
        // Each worker builds its own hasher: swift-crypto's hash states are not Sendable.
        let hasher = VeritySaltedHasher<H>(salt: geometry.parameters.salt, hashType: geometry.parameters.hashType)
        let perParent = UInt64(geometry.digestsPerBlock)
        var sourceBuffer = [UInt8](repeating: 0, count: max(sourceBlockSize, Self.chunkBytes / sourceBlockSize * sourceBlockSize))
        var parentBuffer = [UInt8](repeating: 0, count: Int(parentsPerUnit) * Int(geometry.parameters.hashBlockSize))
        while true {
            let unit = state.next.wrappingAdd(1, ordering: .relaxed).oldValue
            if unit >= units { return }
            let firstParent = unit * parentsPerUnit
            // A failure before this unit already decides the result.
            if state.lowestFailure() <= firstParent * perParent { return }
            try Task.checkCancellation()
            try verifyUnit(firstParent: firstParent, parents: min(parentsPerUnit, parentBlocks - firstParent),
                           hasher: hasher, sourceBuffer: &sourceBuffer, parentBuffer: &parentBuffer, state: state)
        }
    }

    private func verifyUnit<H: HashFunction>(
        firstParent: UInt64, parents: UInt64, hasher: VeritySaltedHasher<H>,
        sourceBuffer: inout [UInt8], parentBuffer: inout [UInt8], state: VerityLevelState
    ) throws {
        let hashBlockSize = Int(geometry.parameters.hashBlockSize)
        let bits = geometry.bits
        let slot = geometry.digestSlot
        let digestSize = geometry.algorithm.digestSize
        let perParent = UInt64(geometry.digestsPerBlock)
        try parent.read(into: &parentBuffer, count: Int(parents) * hashBlockSize,
                        at: parentOffset + firstParent * UInt64(hashBlockSize))

        let firstBlock = firstParent * perParent
        let endBlock = min((firstParent + parents) * perParent, sourceBlocks)
        let chunkBlocks = UInt64(max(1, sourceBuffer.count / sourceBlockSize))
        var block = firstBlock
        while block < endBlock {
            let count = min(chunkBlocks, endBlock - block)
            try source.read(into: &sourceBuffer, count: Int(count) * sourceBlockSize,
                            at: sourceOffset + block * UInt64(sourceBlockSize))
            for i in 0..<Int(count) {
                let index = block + UInt64(i)
                let start = i * sourceBlockSize
                let digest = hasher.digest(sourceBuffer[start..<(start + sourceBlockSize)])
                let local = Int(index - firstBlock)
                let position = (local >> bits) * hashBlockSize + (local & (Int(perParent) - 1)) * slot
                if !(digest == parentBuffer[position..<(position + digestSize)]) {
                    state.record(key: index, VerityError.blockMismatch(
                        area: area, level: sourceLevel, index: index,
                        offset: sourceOffset + index * UInt64(sourceBlockSize), path: source.path))
                    return
                }
            }
            block += count
            progress?.add(count * UInt64(sourceBlockSize))
        }

        // Zeros where no digest is: slot padding (type 1) and each parent block's tail.
        for p in 0..<Int(parents) {
            let parentIndex = firstParent + UInt64(p)
            let used = Int(min(perParent, sourceBlocks - parentIndex * perParent))
            let base = p * hashBlockSize
            var zeroRanges: [Range<Int>] = []
            if slot > digestSize {
                for s in 0..<used { zeroRanges.append((base + s * slot + digestSize)..<(base + (s + 1) * slot)) }
            }
            zeroRanges.append((base + used * slot)..<(base + hashBlockSize))
            for range in zeroRanges {
                if let bad = parentBuffer[range].firstIndex(where: { $0 != 0 }) {
                    state.record(key: parentIndex * perParent + UInt64(used), VerityError.nonZeroPadding(
                        level: parentLevel, index: parentIndex,
                        offset: parentOffset + parentIndex * UInt64(hashBlockSize) + UInt64(bad - base), path: parent.path))
                    return
                }
            }
        }
    }
}

/// Work distribution and the lowest failure of one level, shared by its worker tasks.
final class VerityLevelState: Sendable {
    let next = Atomic<UInt64>(0)
    let failure = Mutex<(key: UInt64, error: VerityError)?>(nil)

    func lowestFailure() -> UInt64 {
        failure.withLock { $0?.key ?? .max }
    }

    func record(key: UInt64, _ error: VerityError) {
        failure.withLock { current in
            if let existing = current, existing.key <= key { return }
            current = (key, error)
        }
    }
}

/// Lower-case hex, as veritysetup and systemd print root hashes.
public enum VerityHex {
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses hex text (either case, surrounding whitespace allowed); nil when it is not hex or empty.
    public static func decode(_ text: String) -> [UInt8]? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let chars = Array(trimmed.utf8)
        guard !chars.isEmpty, chars.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
