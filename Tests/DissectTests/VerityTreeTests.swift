import Dissect
import Foundation
import Testing
import TestSupport

/// The userspace hash tree verifier against `veritysetup format` / `veritysetup verify`.
@Suite struct VerityTreeTests {
    @Test("root hash agrees with veritysetup format", arguments: VerityCase.all)
    func agreesWithVeritysetup(_ testCase: VerityCase) async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-tree")
        let (target, root) = try testCase.make(in: dir)
        let report = try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        #expect(report.rootHash == root)
        #expect(report.dataBlocks == UInt64(testCase.dataBytes / testCase.dataBlockSize))
        #expect(report.hashType == UInt32(testCase.hashType))
        #expect(report.algorithm == testCase.algorithm)
        #expect(report.bytesChecked >= UInt64(testCase.dataBytes))
    }

    @Test("superblock parses as libcryptsetup reads it", arguments: VerityCase.all)
    func superblockMatchesLibcryptsetup(_ testCase: VerityCase) throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-sb")
        let (target, _) = try testCase.make(in: dir)
        let bytes = Array(try VerityFixture.read(target.hashPath).prefix(512))
        let ours = try VeritySuperblock.parse(bytes)
        let theirs = try CryptsetupVerity.readSuperblock(path: target.hashPath)
        #expect(ours == theirs)
        #expect(ours.salt == (testCase.salt == "-" ? [] : VerityHex.decode(testCase.salt)))
        // And the serializer writes what libcryptsetup wrote.
        #expect(ours.serialized() == bytes)
    }

    @Test("a wrong root hash is refused, naming the top block")
    func wrongRootHash() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-root")
        let (target, root) = try VerityCase.all[0].make(in: dir)
        var wrong = try #require(VerityHex.decode(root))
        wrong[31] ^= 1
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: wrong)
        }
        guard case .rootHashMismatch(let area, _, _, _, _, let computed)? = error else {
            Issue.record("expected a root hash mismatch, got \(String(describing: error))")
            return
        }
        #expect(area == .hash)
        #expect(VerityHex.encode(computed) == root)
        #expect(try !VerityFixture.veritysetupAccepts(data: target.dataPath, hash: target.hashPath, rootHash: VerityHex.encode(wrong)))
    }

    @Test("a root hash of the wrong length is refused")
    func rootHashLength() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-len")
        let (target, root) = try VerityCase.all[0].make(in: dir)
        let short = Array(try #require(VerityHex.decode(root)).prefix(20))
        await #expect(throws: VerityError.self) { try await VerityVerifier.verify(target, rootHash: short) }
    }

    @Test("a flipped bit in the data area names that data block", arguments: [0, 1, 513, 1023])
    func flippedDataBit(block: Int) async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-data")
        let testCase = VerityCase.all[0]  // 1024 blocks of 4 KiB
        let (target, root) = try testCase.make(in: dir)
        let offset = UInt64(block * testCase.dataBlockSize + 100)
        try VerityFixture.flipBit(target.dataPath, at: offset, bit: 3)
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        }
        let bad = try #require(error?.badBlock)
        #expect(bad.area == .data)
        #expect(bad.index == UInt64(block))
        #expect(bad.offset == UInt64(block * testCase.dataBlockSize))
        #expect(try !VerityFixture.veritysetupAccepts(data: target.dataPath, hash: target.hashPath, rootHash: root))
    }

    @Test("with several damaged data blocks the first one is named")
    func firstBadBlockWins() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-first")
        // 48 MiB: several work units per core, so later units finish before earlier ones.
        let testCase = VerityCase(dataBytes: 48 << 20, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 1,
                                  algorithm: "sha256", salt: "01", seed: 11)
        let (target, root) = try testCase.make(in: dir)
        for block in [11_000, 9_000, 5_001] {
            try VerityFixture.flipBit(target.dataPath, at: UInt64(block * 4096 + 7))
        }
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        }
        #expect(error?.badBlock?.index == 5_001)
        #expect(error?.badBlock?.area == .data)
    }

    /// Flips a bit in each level of the 4-level tree (512-byte hash blocks) and expects that
    /// level and block to be named; the top level fails against the root hash.
    @Test("a flipped bit in the hash area names the level and block")
    func flippedHashBits() async throws {
        try Privileged.require(.tool("veritysetup"))
        let testCase = VerityCase.all[2]
        let probe = try TemporaryDirectory(prefix: "verity-hash-probe")
        let (probeTarget, _) = try testCase.make(in: probe)
        let superblock = try VeritySuperblock.parse(Array(try VerityFixture.read(probeTarget.hashPath).prefix(512)))
        let geometry = try VerityGeometry(parameters: superblock, treeOffset: 512)
        #expect(geometry.levels.count == 4)
        for (level, info) in geometry.levels.enumerated() {
            let block = info.blocks / 2  // a middle block of the level (0 for the top)
            let dir = try TemporaryDirectory(prefix: "verity-hash-\(level)")
            let (target, root) = try testCase.make(in: dir)
            let offset = info.offset + block * 512 + 5  // inside the first digest
            try VerityFixture.flipBit(target.hashPath, at: offset, bit: 1)
            let error = await #expect(throws: VerityError.self, "level \(level)") {
                try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
            }
            let bad = try #require(error?.badBlock, "level \(level): \(String(describing: error))")
            #expect(bad.area == .hash, "level \(level)")
            #expect(bad.level == level, "level \(level)")
            #expect(bad.index == block, "level \(level)")
            #expect(bad.offset == info.offset + block * 512, "level \(level)")
            #expect(try !VerityFixture.veritysetupAccepts(data: target.dataPath, hash: target.hashPath, rootHash: root))
        }
    }

    @Test("non-zero padding in a hash block is refused")
    func hashPadding() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-pad")
        // 777 data blocks: level 0 has 7 blocks, the last holding 9 digests and zero padding.
        let testCase = VerityCase.all[5]
        let (target, root) = try testCase.make(in: dir)
        let superblock = try VeritySuperblock.parse(Array(try VerityFixture.read(target.hashPath).prefix(512)))
        let geometry = try VerityGeometry(parameters: superblock, treeOffset: 4096)
        let level0 = geometry.levels[0]
        // Damage the padding of the last level-0 block; the block then no longer matches level 1.
        try VerityFixture.flipBit(target.hashPath, at: level0.offset + (level0.blocks - 1) * 4096 + 4000)
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        }
        #expect(error?.badBlock?.area == .hash)
        #expect(error?.badBlock?.level == 0)
        #expect(error?.badBlock?.index == level0.blocks - 1)
    }

    @Test("a flipped bit in the superblock is refused", arguments: [
        0, 8, 12, 33, 64, 66, 68, 72, 80, 82, 88, 100, 400,
    ])
    func flippedSuperblockBit(offset: Int) async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-sb-flip")
        let (target, root) = try VerityCase.all[0].make(in: dir)
        try VerityFixture.flipBit(target.hashPath, at: UInt64(offset), bit: 2)
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        }
        #expect(error != nil)
    }

    @Test("a truncated hash file is refused before hashing")
    func truncatedHashArea() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-trunc")
        let (target, root) = try VerityCase.all[0].make(in: dir)
        let short = VerityTarget(dataPath: target.dataPath, dataSize: target.dataSize, hashPath: target.hashPath,
                                 hashSize: target.hashSize - 4096)
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(short, rootHash: try #require(VerityHex.decode(root)))
        }
        guard case .areaTooSmall(let area, _, _, _)? = error else {
            Issue.record("expected areaTooSmall, got \(String(describing: error))")
            return
        }
        #expect(area == .hash)
    }

    @Test("a hash area without a superblock verifies with explicit parameters")
    func noSuperblock() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-nosb")
        let data = dir.appending("d")
        let hash = dir.appending("h")
        try VerityFixture.write(VerityFixture.bytes(count: 3 << 20, seed: 12), to: data)
        let root = try VerityFixture.format(data: data, hash: hash, arguments: ["--no-superblock", "--salt=1234", "--hash-offset=8192"])
        let parameters = VeritySuperblock(hashType: 1, algorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 4096,
                                          dataBlocks: 768, salt: [0x12, 0x34])
        var target = try VerityTarget.files(data: data, hash: hash, parameters: parameters)
        target.hashOffset = 8192
        target.hashSize -= 8192
        let report = try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        #expect(report.rootHash == root)
        #expect(report.superblock == false)
    }

    @Test("data and hash at offsets inside one file (a partitioned image)")
    func offsetsInOneFile() async throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-onefile")
        let testCase = VerityCase.all[1]
        let (parts, root) = try testCase.make(in: dir)
        let data = try VerityFixture.read(parts.dataPath)
        let hash = try VerityFixture.read(parts.hashPath)
        // [1 MiB gap][data][3 sectors gap][hash][tail]
        let image = [UInt8](repeating: 0xAA, count: 1 << 20) + data + [UInt8](repeating: 0, count: 1536) + hash + [UInt8](repeating: 1, count: 4096)
        let path = dir.appending("image.raw")
        try VerityFixture.write(image, to: path)
        let target = VerityTarget(dataPath: path, dataOffset: 1 << 20, dataSize: UInt64(data.count), hashPath: path,
                                  hashOffset: UInt64((1 << 20) + data.count + 1536), hashSize: UInt64(hash.count))
        let report = try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        #expect(report.rootHash == root)

        // A flip in the image's data partition is named with its offset in the image.
        try VerityFixture.flipBit(path, at: UInt64((1 << 20) + 512 * 7 + 1))
        let error = await #expect(throws: VerityError.self) {
            try await VerityVerifier.verify(target, rootHash: try #require(VerityHex.decode(root)))
        }
        #expect(error?.badBlock?.index == 7)
        #expect(error?.badBlock?.offset == UInt64((1 << 20) + 512 * 7))
    }
}
