import Dissect
import Foundation
import Testing
import TestSupport

/// SECURITY.md 12: hostile GPTs are parsed safely or refused with a clear error; none crashes.
@Suite struct GPTParserTests {
    let root = PartitionType.typeUUID(.root, architecture: .x86_64)!
    let home = PartitionType.typeUUID(.home)!

    func image() -> GPTTestImage {
        var img = GPTTestImage()
        img.entries = [
            .init(type: root, first: 2048, last: 3071, attributes: GPTPartitionEntry.attributeGrowFileSystem, name: "root-x86-64"),
            .init(type: home, first: 3072, last: 4000, name: "home"),
        ]
        return img
    }

    @Test func parsesAValidTable() throws {
        let img = image()
        let table = try #require(try GPT.parse(MemorySource(img.build())))
        #expect(table.sectorSize == 512)
        #expect(!table.usedBackup)
        #expect(table.entries.count == 2)
        #expect(table.entries[0].typeUUID == root)
        #expect(table.entries[0].uuid == img.entries[0].uuid)
        #expect(table.entries[0].name == "root-x86-64")
        #expect(table.entries[0].firstLBA == 2048 && table.entries[0].lastLBA == 3071)
        #expect(table.entries[0].attributes == GPTPartitionEntry.attributeGrowFileSystem)
        #expect(table.entries[1].number == 2)
    }

    @Test func parses4096ByteSectors() throws {
        var img = image()
        img.sectorSize = 4096
        img.sectors = 1024
        img.entries = [.init(type: root, first: 256, last: 511, name: "r")]
        let table = try #require(try GPT.parse(MemorySource(img.build())))
        #expect(table.sectorSize == 4096)
        #expect(table.entries.first?.firstLBA == 256)
    }

    @Test func noProtectiveMBRIsNotGPT() throws {
        var disk = image().build()
        disk[446 + 4] = 0x83
        #expect(try GPT.parse(MemorySource(disk)) == nil)
    }

    @Test func badPrimaryHeaderCRCFallsBackToBackup() throws {
        var disk = image().build()
        disk[512 + 40] ^= 0xFF  // first usable LBA changed, CRC now wrong
        let table = try #require(try GPT.parse(MemorySource(disk)))
        #expect(table.usedBackup)
        #expect(table.entries.count == 2)
        #expect(table.warnings.first?.contains("CRC mismatch at LBA 1") == true)
    }

    @Test func badPrimaryEntryCRCFallsBackToBackup() throws {
        var disk = image().build()
        disk[1024 + 60] ^= 0x01  // a byte of the first entry's name in the primary array
        let table = try #require(try GPT.parse(MemorySource(disk)))
        #expect(table.usedBackup)
        #expect(table.entries[0].name == "root-x86-64")
    }

    @Test func primaryWipedUsesBackup() throws {
        var disk = image().build()
        for i in 512..<1024 { disk[i] = 0 }
        let table = try #require(try GPT.parse(MemorySource(disk)))
        #expect(table.usedBackup)
        #expect(table.entries.count == 2)
    }

    @Test func bothHeadersBadIsRefused() throws {
        let img = image()
        var disk = img.build()
        disk[512 + 40] ^= 0xFF
        disk[Int(img.backupHeaderLBA) * 512 + 40] ^= 0xFF
        #expect { try GPT.parse(MemorySource(disk)) } throws: { error in
            "\(error)".contains("no valid GPT") && "\(error)".contains("CRC mismatch")
        }
    }

    @Test func bothEntryArraysBadIsRefused() throws {
        let img = image()
        var disk = img.build()
        disk[1024 + 60] ^= 1
        disk[Int(img.backupArrayLBA) * 512 + 60] ^= 1
        #expect { try GPT.parse(MemorySource(disk)) } throws: { error in
            "\(error)".contains("entry array CRC mismatch")
        }
    }

    /// A header with a consistent CRC whose array lies past the end of the disk.
    @Test func entryArrayPastTheEndIsRefused() throws {
        let img = image()
        var disk = img.build()
        for lba in [1, Int(img.backupHeaderLBA)] {
            putLE(&disk, lba * 512 + 72, img.sectors + 10, 8)
            GPTTestImage.fixHeaderCRC(&disk, lba: lba)
        }
        #expect { try GPT.parse(MemorySource(disk)) } throws: { error in
            "\(error)".contains("past the end of the disk")
        }
    }

    @Test func hugeEntryCountIsRefusedWithoutAllocating() throws {
        let img = image()
        var disk = img.build()
        for lba in [1, Int(img.backupHeaderLBA)] {
            putLE(&disk, lba * 512 + 80, 0xFFFF_FFFF, 4)
            GPTTestImage.fixHeaderCRC(&disk, lba: lba)
        }
        #expect { try GPT.parse(MemorySource(disk)) } throws: { error in
            "\(error)".contains("larger than")
        }
    }

    @Test func hugeOrTinyEntrySizeIsRefused() throws {
        for size: UInt64 in [0xFFFF_FFF8, 64, 130] {
            let img = image()
            var disk = img.build()
            for lba in [1, Int(img.backupHeaderLBA)] {
                putLE(&disk, lba * 512 + 84, size, 4)
                GPTTestImage.fixHeaderCRC(&disk, lba: lba)
            }
            #expect(throws: GPT.Error.self) { try GPT.parse(MemorySource(disk)) }
        }
    }

    @Test func zeroEntriesIsAnEmptyTable() throws {
        var img = image()
        img.entryCount = 0
        let table = try #require(try GPT.parse(MemorySource(img.build())))
        #expect(table.entries.isEmpty)
    }

    @Test func overlappingPartitionsAreRefused() throws {
        var img = image()
        img.entries[1].first = 3000
        #expect(throws: GPT.Error.partitionsOverlap(1, 2)) { try GPT.parse(MemorySource(img.build())) }
    }

    @Test func partitionPastTheEndIsRefused() throws {
        var img = image()
        img.entries[1].last = img.sectors + 100
        #expect { try GPT.parse(MemorySource(img.build())) } throws: { error in
            "\(error)".contains("outside the usable range")
        }
    }

    @Test func partitionWithFirstAfterLastIsRefused() throws {
        var img = image()
        img.entries[1].first = 3500
        img.entries[1].last = 3100
        #expect(throws: GPT.Error.self) { try GPT.parse(MemorySource(img.build())) }
    }

    @Test func headerClaimingAnotherLBAIsRefused() throws {
        let img = image()
        var disk = img.build()
        putLE(&disk, 512 + 24, 7, 8)
        GPTTestImage.fixHeaderCRC(&disk, lba: 1)
        let table = try #require(try GPT.parse(MemorySource(disk)))
        #expect(table.usedBackup)
    }

    /// A truncated disk: too short for a GPT it is no GPT (nil); cut inside the primary entry
    /// array, with the backup gone too, it is refused; cut only at the backup header, the
    /// primary still serves. Never a trap.
    @Test func truncatedDiskIsRefusedOrParsed() throws {
        let disk = image().build()
        for length in [0, 511, 512, 1023] {
            #expect(try GPT.parse(MemorySource(Array(disk.prefix(length)))) == nil, "length \(length)")
        }
        for length in [1024, 1536, 4096, 8192] {
            #expect(throws: GPT.Error.self, "length \(length)") { try GPT.parse(MemorySource(Array(disk.prefix(length)))) }
        }
        let withoutBackup = try #require(try GPT.parse(MemorySource(Array(disk.prefix(disk.count - 512)))))
        #expect(!withoutBackup.usedBackup && withoutBackup.entries.count == 2)
    }

    /// Random damage anywhere in the metadata never traps: the table is refused with a GPT error,
    /// or what is parsed lies inside the disk, in the usable range, without overlaps. Seeded, so a
    /// failure replays.
    @Test func randomCorruptionIsRefusedOrConsistent() throws {
        let img = image()
        let clean = img.build()
        var rng = SeededGenerator(seed: 0x6750_5421)
        let hot = Array(0..<(34 * 512)) + Array((Int(img.backupArrayLBA) * 512)..<clean.count)
        var refused = 0, parsed = 0
        for round in 0..<2000 {
            var disk = clean
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                disk[hot.randomElement(using: &rng)!] = UInt8.random(in: 0...255, using: &rng)
            }
            // Rewrite the CRCs half the time so that field checks (not only CRCs) are exercised.
            if Bool.random(using: &rng) {
                GPTTestImage.fixHeaderCRC(&disk, lba: 1)
            }
            do {
                guard let table = try GPT.parse(MemorySource(disk)) else {
                    // Only damage to the protective MBR makes it no GPT at all.
                    #expect(!GPT.hasProtectiveMBR(Array(disk.prefix(512))), "round \(round)")
                    continue
                }
                parsed += 1
                let sectors = UInt64(disk.count / table.sectorSize)
                for entry in table.entries {
                    #expect(entry.firstLBA <= entry.lastLBA && entry.lastLBA < sectors, "round \(round): \(entry)")
                    #expect(entry.firstLBA >= table.firstUsableLBA && entry.lastLBA <= table.lastUsableLBA, "round \(round)")
                }
                for (i, a) in table.entries.enumerated() {
                    for b in table.entries[(i + 1)...] {
                        #expect(a.lastLBA < b.firstLBA || b.lastLBA < a.firstLBA, "round \(round): overlap")
                    }
                }
            } catch is GPT.Error {
                refused += 1
            }
        }
        // Both outcomes happen: the damage reaches the checks, and the backup rescues some.
        #expect(refused > 0 && parsed > 0, "refused \(refused), parsed \(parsed)")
    }

    /// MBR records with random bytes (status, type, start, count): parsed or refused, never a trap,
    /// and every accepted partition lies inside the image.
    @Test func randomMBRNeverCrashes() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var sector = [UInt8](repeating: 0, count: 512)
            for i in 446..<510 { sector[i] = UInt8.random(in: 0...255, using: &rng) }
            if Bool.random(using: &rng) { for i in 0..<4 { sector[446 + i * 16] = Bool.random(using: &rng) ? 0x80 : 0 } }
            sector[510] = 0x55
            sector[511] = 0xAA
            let size = UInt64.random(in: 0...(1 << 40), using: &rng)
            if let entries = try? MBR.parse(sector0: sector, imageSize: size) {
                for e in entries { #expect(e.offset + e.size <= size) }
            }
        }
    }
}
