import Dissect
import Foundation
import Testing

/// The superblock parser on hand-made bytes: every field is validated and named in the error.
@Suite struct VeritySuperblockTests {
    static let good = VeritySuperblock(hashType: 1, algorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 4096,
                                       dataBlocks: 1000, salt: [1, 2, 3, 4])

    @Test func roundTrip() throws {
        #expect(try VeritySuperblock.parse(Self.good.serialized()) == Self.good)
    }

    @Test("each bad field is named", arguments: [
        (0, [UInt8(ascii: "X")], "signature"),
        (8, [2], "version"),
        (12, [2], "hash_type"),
        (32, Array("md5\0\0\0".utf8), "algorithm"),
        (64, [0, 3, 0, 0], "data_block_size"),       // 768: not a power of two
        (68, [0, 0, 0x10, 0], "hash_block_size"),    // 1 MiB: above veritysetup's 512 KiB
        (64, [0, 1, 0, 0], "data_block_size"),       // 256: below 512
        (72, [0, 0, 0, 0, 0, 0, 0, 0], "data_blocks"),
        (80, [1, 1], "salt_size"),                   // 257
        (84, [9], "_pad1"),
        (100, [9], "salt"),                          // beyond the 4 salt bytes
        (500, [9], "_pad2"),
        (40, [UInt8(ascii: "x")], "algorithm"),      // junk after the NUL of "sha256"
    ] as [(Int, [UInt8], String)])
    func badField(offset: Int, bytes: [UInt8], field: String) throws {
        var raw = Self.good.serialized()
        raw.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        let error = #expect(throws: VeritySuperblock.Error.self) { try VeritySuperblock.parse(raw) }
        #expect(error?.description.contains(field) == true, "\(String(describing: error)) should name \(field)")
    }

    @Test func tooShort() {
        #expect(throws: VeritySuperblock.Error.tooShort(100)) { try VeritySuperblock.parse([UInt8](repeating: 0, count: 100)) }
    }

    @Test("geometry overflow on hostile parameters is an error, not a trap")
    func hostileGeometry() throws {
        let huge = VeritySuperblock(hashType: 1, algorithm: "sha256", dataBlockSize: 512 * 1024, hashBlockSize: 512,
                                    dataBlocks: .max, salt: [])
        #expect(throws: VerityGeometry.Error.self) { try VerityGeometry(parameters: huge, treeOffset: 4096) }
        let offsetOverflow = VeritySuperblock(dataBlocks: 1 << 40, salt: [])
        #expect(throws: VerityGeometry.Error.self) { try VerityGeometry(parameters: offsetOverflow, treeOffset: .max - 10) }
    }

    @Test("geometry follows the documented formula")
    func geometry() throws {
        // 4 KiB blocks, sha256: 128 digests per block; 1000 blocks -> level 0: 8 blocks, level 1: 1.
        let g = try VerityGeometry(parameters: Self.good, treeOffset: 4096)
        #expect(g.bits == 7)
        #expect(g.levels.map(\.blocks) == [8, 1])
        #expect(g.levels[1].offset == 4096)       // top level first
        #expect(g.levels[0].offset == 8192)
        #expect(g.hashEnd == 4096 + 9 * 4096)
        // sha1 type 1 pads digests to 32 bytes; type 0 packs them.
        let sha1 = try VerityGeometry(parameters: VeritySuperblock(hashType: 1, algorithm: "sha1", dataBlocks: 10, salt: []), treeOffset: 0)
        #expect(sha1.digestSlot == 32)
        let sha1v0 = try VerityGeometry(parameters: VeritySuperblock(hashType: 0, algorithm: "sha1", dataBlocks: 10, salt: []), treeOffset: 0)
        #expect(sha1v0.digestSlot == 20)
        #expect(VerityGeometry.treeOffset(hashOffset: 0, hashBlockSize: 4096, superblock: true) == 4096)
        #expect(VerityGeometry.treeOffset(hashOffset: 0, hashBlockSize: 512, superblock: true) == 512)
        #expect(VerityGeometry.treeOffset(hashOffset: 8192, hashBlockSize: 4096, superblock: false) == 8192)
    }
}
