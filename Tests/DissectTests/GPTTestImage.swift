import Dissect
import Foundation

/// Builds GPT disks in memory for parser tests: protective MBR, primary header and array at
/// LBA 1/2, backup array and header at the end, CRCs computed. Tests then damage the bytes.
struct GPTTestImage {
    struct Entry {
        var type: UUID
        var uuid = UUID()
        var first: UInt64
        var last: UInt64
        var attributes: UInt64 = 0
        var name = ""
    }

    var sectorSize = 512
    var sectors: UInt64 = 4096
    var entryCount = 128
    var entrySize = 128
    var entries: [Entry] = []

    var arraySectors: UInt64 { UInt64((entryCount * entrySize + sectorSize - 1) / sectorSize) }
    var firstUsable: UInt64 { 2 + arraySectors }
    var lastUsable: UInt64 { sectors - 2 - arraySectors }
    var backupHeaderLBA: UInt64 { sectors - 1 }
    var backupArrayLBA: UInt64 { sectors - 1 - arraySectors }

    func array() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: entryCount * entrySize)
        for (i, e) in entries.enumerated() where i < entryCount {
            let base = i * entrySize
            put(&bytes, base, e.type.gptBytes)
            put(&bytes, base + 16, e.uuid.gptBytes)
            putLE(&bytes, base + 32, e.first, 8)
            putLE(&bytes, base + 40, e.last, 8)
            putLE(&bytes, base + 48, e.attributes, 8)
            let name = Array(e.name.utf16.prefix(36))
            for (j, unit) in name.enumerated() { putLE(&bytes, base + 56 + j * 2, UInt64(unit), 2) }
        }
        return bytes
    }

    func header(myLBA: UInt64, alternate: UInt64, arrayLBA: UInt64, arrayCRC: UInt32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: sectorSize)
        put(&h, 0, Array("EFI PART".utf8))
        putLE(&h, 8, 0x0001_0000, 4)
        putLE(&h, 12, 92, 4)
        putLE(&h, 24, myLBA, 8)
        putLE(&h, 32, alternate, 8)
        putLE(&h, 40, firstUsable, 8)
        putLE(&h, 48, lastUsable, 8)
        put(&h, 56, UUID().gptBytes)
        putLE(&h, 72, arrayLBA, 8)
        putLE(&h, 80, UInt64(entryCount), 4)
        putLE(&h, 84, UInt64(entrySize), 4)
        putLE(&h, 88, UInt64(arrayCRC), 4)
        putLE(&h, 16, UInt64(GPT.crc32(Array(h[0..<92]))), 4)
        return h
    }

    func build() -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: Int(sectors) * sectorSize)
        // Protective MBR: one 0xEE record covering the disk.
        disk[446 + 4] = 0xEE
        putLE(&disk, 446 + 8, 1, 4)
        putLE(&disk, 446 + 12, UInt64(min(sectors - 1, 0xFFFF_FFFF)), 4)
        disk[510] = 0x55
        disk[511] = 0xAA
        let a = array()
        let crc = GPT.crc32(a)
        put(&disk, sectorSize, header(myLBA: 1, alternate: backupHeaderLBA, arrayLBA: 2, arrayCRC: crc))
        put(&disk, 2 * sectorSize, a)
        put(&disk, Int(backupArrayLBA) * sectorSize, a)
        put(&disk, Int(backupHeaderLBA) * sectorSize, header(myLBA: backupHeaderLBA, alternate: 1, arrayLBA: backupArrayLBA, arrayCRC: crc))
        return disk
    }

    /// Rewrites the header CRC of the header at `lba` after a test changed a field.
    static func fixHeaderCRC(_ disk: inout [UInt8], lba: Int, sectorSize: Int = 512) {
        let base = lba * sectorSize
        for i in 16..<20 { disk[base + i] = 0 }
        let crc = GPT.crc32(Array(disk[base..<(base + 92)]))
        putLE(&disk, base + 16, UInt64(crc), 4)
    }
}

func put(_ bytes: inout [UInt8], _ at: Int, _ values: [UInt8]) {
    for (i, v) in values.enumerated() { bytes[at + i] = v }
}

func putLE(_ bytes: inout [UInt8], _ at: Int, _ value: UInt64, _ width: Int) {
    for i in 0..<width { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
}
