import Foundation

// MBR (DOS) partition table in sector 0 (512-byte sectors), little-endian:
//
//   offset  size  field
//   ------  ----  -----------------------------------------------
//        0   446  boot code
//      446    16  partition record 1   (records 2-4 follow at 462, 478, 494)
//      510     2  signature 0x55 0xAA
//
// Partition record:
//
//   offset  size  field
//   ------  ----  -----------------------------------------------
//        0     1  status (0x80 = bootable/active)
//        1     3  CHS of first sector (ignored)
//        4     1  partition type (0x83 Linux, 0xEA XBOOTLDR, 0xEE GPT protective, 0x05/0x0F extended)
//        5     3  CHS of last sector (ignored)
//        8     4  first LBA
//       12     4  number of sectors
//
// Only the four primary records are read; extended/logical chains are not followed (an image
// systemd-nspawn accepts needs only one bootable Linux primary partition).

/// One used primary MBR record.
public struct MBRPartitionEntry: Sendable, Equatable {
    /// 1...4, the kernel's partition number.
    public var number: Int
    public var type: UInt8
    public var bootable: Bool
    public var firstLBA: UInt64
    public var sectors: UInt64

    public var offset: UInt64 { firstLBA * 512 }
    public var size: UInt64 { sectors * 512 }
}

public enum MBR {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case partitionPastEnd(number: Int)
        case partitionsOverlap(Int, Int)

        public var description: String {
            switch self {
            case .partitionPastEnd(let n): "MBR partition \(n) extends past the end of the image"
            case .partitionsOverlap(let a, let b): "MBR partitions \(a) and \(b) overlap"
            }
        }
    }

    public static let linuxType: UInt8 = 0x83
    public static let xbootldrType: UInt8 = 0xEA

    /// The used primary records of sector 0, or nil when it carries no MBR signature.
    public static func parse(sector0: [UInt8], imageSize: UInt64) throws -> [MBRPartitionEntry]? {
        guard sector0.count >= 512, sector0[510] == 0x55, sector0[511] == 0xAA else { return nil }
        let r = LittleEndianReader(bytes: sector0)
        var entries: [MBRPartitionEntry] = []
        for i in 0..<4 {
            let base = 446 + i * 16
            guard let status = try? r.u8(base), let type = try? r.u8(base + 4),
                  let first = try? r.u32(base + 8), let count = try? r.u32(base + 12) else { return nil }
            // A status byte other than 0x00/0x80 means this is not a partition table (a FAT boot
            // sector also ends in 0x55AA).
            guard status == 0 || status == 0x80 else { return nil }
            if type == 0 || count == 0 { continue }
            let entry = MBRPartitionEntry(number: i + 1, type: type, bootable: status == 0x80,
                                          firstLBA: UInt64(first), sectors: UInt64(count))
            // 32-bit fields times 512 cannot overflow UInt64.
            guard entry.firstLBA > 0, entry.offset + entry.size <= imageSize else { throw Error.partitionPastEnd(number: i + 1) }
            entries.append(entry)
        }
        let sorted = entries.filter { $0.type != 0x05 && $0.type != 0x0F && $0.type != 0x85 }.sorted { $0.firstLBA < $1.firstLBA }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.firstLBA < a.firstLBA + a.sectors {
            throw Error.partitionsOverlap(min(a.number, b.number), max(a.number, b.number))
        }
        return entries
    }
}
