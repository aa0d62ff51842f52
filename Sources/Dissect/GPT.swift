import CZlib
import Foundation

// Why a hand-written GPT parser rather than libblkid's partition list: libblkid accepts a table
// when either header is good and does not tell which one it used, does not reject overlapping
// partitions or entries outside the usable range, and gives no reason when it ignores a damaged
// table (it simply reports "no partition table"). Dissecting a hostile image needs each of those
// decisions made explicitly and reported, so the table is parsed here over bytes; libblkid is still
// used for what it does well: identifying the filesystem inside each partition (Bindings/Blkid.swift).
//
// GPT header, at LBA 1 (primary) and at the last LBA of the disk (backup), little-endian:
//
//   offset  size  field
//   ------  ----  ---------------------------------------------------------------
//        0     8  signature "EFI PART"
//        8     4  revision (0x00010000)
//       12     4  header size (92 .. sector size)
//       16     4  CRC32 of the header (header size bytes, this field as zero)
//       20     4  reserved, zero
//       24     8  my LBA (where this header is)
//       32     8  alternate LBA (where the other header is)
//       40     8  first usable LBA
//       48     8  last usable LBA (inclusive)
//       56    16  disk GUID (mixed endian)
//       72     8  partition entry array start LBA
//       80     4  number of partition entries
//       84     4  size of one entry (128 * 2^n)
//       88     4  CRC32 of the entry array (count * size bytes)
//
// Partition entry (entry size bytes, the first 128 defined):
//
//   offset  size  field
//   ------  ----  ---------------------------------------------------------------
//        0    16  partition type GUID (all zero = unused entry)
//       16    16  unique partition GUID
//       32     8  first LBA
//       40     8  last LBA (inclusive)
//       48     8  attribute flags (bit 59 growfs, 60 read-only, 63 no-auto for DPS types)
//       56    72  name, UTF-16LE, NUL padded
//
// Protective MBR at LBA 0: signature 0x55 0xAA at byte 510 and a partition record of type 0xEE.

/// One used entry of a GPT partition array.
public struct GPTPartitionEntry: Sendable, Equatable {
    /// 1-based index in the entry array (the kernel's partition number).
    public var number: Int
    public var typeUUID: UUID
    public var uuid: UUID
    public var firstLBA: UInt64
    /// Inclusive.
    public var lastLBA: UInt64
    public var attributes: UInt64
    public var name: String

    public static let attributeGrowFileSystem: UInt64 = 1 << 59
    public static let attributeReadOnly: UInt64 = 1 << 60
    public static let attributeNoAuto: UInt64 = 1 << 63
}

/// A validated GPT partition table.
public struct GPTTable: Sendable, Equatable {
    public var sectorSize: Int
    public var diskUUID: UUID
    public var firstUsableLBA: UInt64
    public var lastUsableLBA: UInt64
    /// Used entries only, in array order.
    public var entries: [GPTPartitionEntry]
    /// True when the primary header or its array was damaged and the backup was used.
    public var usedBackup: Bool
    /// What was wrong with the primary table when the backup was used.
    public var warnings: [String]
}

public enum GPT {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case noHeader
        case badHeader(lba: UInt64, reason: String)
        case headerCRCMismatch(lba: UInt64)
        case entryArrayCRCMismatch(lba: UInt64)
        case bothHeadersBad(primary: String, backup: String)
        case partitionOutsideUsableRange(number: Int, first: UInt64, last: UInt64)
        case partitionsOverlap(Int, Int)
        case read(String)

        /// Partitions that overlap or leave the usable range: a consistent but hostile table.
        var isLayoutError: Bool {
            switch self {
            case .partitionsOverlap, .partitionOutsideUsableRange: true
            default: false
            }
        }

        public var description: String {
            switch self {
            case .noHeader:
                "protective MBR present but no GPT header at LBA 1 or at the last LBA (sector size 512 or 4096)"
            case .badHeader(let lba, let reason):
                "GPT header at LBA \(lba): \(reason)"
            case .headerCRCMismatch(let lba):
                "GPT header CRC mismatch at LBA \(lba)"
            case .entryArrayCRCMismatch(let lba):
                "GPT partition entry array CRC mismatch (header at LBA \(lba))"
            case .bothHeadersBad(let primary, let backup):
                "no valid GPT: primary: \(primary); backup: \(backup)"
            case .partitionOutsideUsableRange(let number, let first, let last):
                "GPT partition \(number) (LBA \(first)-\(last)) lies outside the usable range of the disk"
            case .partitionsOverlap(let a, let b):
                "GPT partitions \(a) and \(b) overlap"
            case .read(let what):
                "reading GPT: \(what)"
            }
        }
    }

    /// Largest entry array accepted: the specification's minimum is 16 KiB and real tables use
    /// 128 entries of 128 bytes; a 4 MiB cap keeps a hostile count from making us allocate gigabytes.
    static let maximumArrayBytes = 4 << 20
    static let signature = Array("EFI PART".utf8)

    /// True when LBA 0 holds a protective (or hybrid) MBR: 0x55AA and a record of type 0xEE.
    public static func hasProtectiveMBR(_ sector0: [UInt8]) -> Bool {
        guard sector0.count >= 512, sector0[510] == 0x55, sector0[511] == 0xAA else { return false }
        return (0..<4).contains { sector0[446 + $0 * 16 + 4] == 0xEE }
    }

    /// Parses the GPT of `source`, or returns nil when there is no protective MBR (not a GPT disk).
    /// `sectorSizes` lists the logical sector sizes to try (a block device knows its own).
    public static func parse(_ source: RandomAccessSource, sectorSizes: [Int] = [512, 4096]) throws -> GPTTable? {
        guard source.size >= 1024 else { return nil }
        let sector0 = try readBytes(source, 0, 512)
        guard hasProtectiveMBR(sector0) else { return nil }

        // Probe the sector size: the one where a header signature sits at LBA 1 or the last LBA.
        for sectorSize in sectorSizes where source.size >= UInt64(sectorSize) * 3 {
            let lastLBA = source.size / UInt64(sectorSize) - 1
            let primary = try readBytes(source, UInt64(sectorSize), 8)
            let backup = try readBytes(source, lastLBA * UInt64(sectorSize), 8)
            guard primary == signature || backup == signature else { continue }
            return try parse(source, sectorSize: sectorSize)
        }
        throw Error.noHeader
    }

    /// Parses with a known sector size: the primary header and array, else the backup. A table
    /// whose CRCs are right but whose partitions overlap or leave the usable range is refused
    /// outright: it was written that way, so the backup would not be more trustworthy.
    static func parse(_ source: RandomAccessSource, sectorSize: Int) throws -> GPTTable {
        let lastLBA = source.size / UInt64(sectorSize) - 1
        var alternateLBA = lastLBA
        let primaryProblem: Error
        do {
            let header = try readHeader(source, lba: 1, sectorSize: sectorSize, lastLBA: lastLBA)
            if header.alternateLBA > 1, header.alternateLBA <= lastLBA { alternateLBA = header.alternateLBA }
            return try validated(try readTable(source, header: header, sectorSize: sectorSize))
        } catch let error as Error {
            if error.isLayoutError { throw error }
            primaryProblem = error
        }
        do {
            let header = try readHeader(source, lba: alternateLBA, sectorSize: sectorSize, lastLBA: lastLBA)
            var table = try validated(try readTable(source, header: header, sectorSize: sectorSize))
            table.usedBackup = true
            table.warnings = ["primary GPT unusable (\(primaryProblem)); using the backup at LBA \(alternateLBA)"]
            return table
        } catch let backupProblem as Error {
            if backupProblem.isLayoutError { throw backupProblem }
            throw Error.bothHeadersBad(primary: primaryProblem.description, backup: backupProblem.description)
        }
    }

    struct Header {
        var lba: UInt64
        var alternateLBA: UInt64
        var firstUsable: UInt64
        var lastUsable: UInt64
        var diskUUID: UUID
        var entriesLBA: UInt64
        var entryCount: Int
        var entrySize: Int
        var entriesCRC: UInt32
    }

    static func readHeader(_ source: RandomAccessSource, lba: UInt64, sectorSize: Int, lastLBA: UInt64) throws -> Header {
        let bytes = try readBytes(source, lba * UInt64(sectorSize), sectorSize)
        let r = LittleEndianReader(bytes: bytes)
        func bad(_ reason: String) -> Error { .badHeader(lba: lba, reason: reason) }
        do {
            guard try r.slice(0, 8) == signature else { throw bad("no \"EFI PART\" signature") }
            let headerSize = Int(try r.u32(12))
            guard headerSize >= 92, headerSize <= sectorSize else { throw bad("header size \(headerSize) out of range 92...\(sectorSize)") }
            var zeroed = try r.slice(0, headerSize)
            for i in 16..<20 { zeroed[i] = 0 }
            guard crc32(zeroed) == (try r.u32(16)) else { throw Error.headerCRCMismatch(lba: lba) }

            let myLBA = try r.u64(24)
            guard myLBA == lba else { throw bad("claims to be at LBA \(myLBA)") }
            let firstUsable = try r.u64(40)
            let lastUsable = try r.u64(48)
            guard firstUsable <= lastUsable else { throw bad("first usable LBA \(firstUsable) after last usable LBA \(lastUsable)") }
            guard lastUsable < lastLBA, firstUsable >= 2 else { throw bad("usable range \(firstUsable)-\(lastUsable) outside the disk (last LBA \(lastLBA))") }

            let entriesLBA = try r.u64(72)
            let count = try r.u32(80)
            let entrySize = try r.u32(84)
            guard entrySize >= 128, entrySize % 8 == 0, entrySize <= 4096 else { throw bad("partition entry size \(entrySize) invalid (128...4096, multiple of 8)") }
            let (arrayBytes, overflow) = UInt64(count).multipliedReportingOverflow(by: UInt64(entrySize))
            guard !overflow, arrayBytes <= UInt64(maximumArrayBytes) else {
                throw bad("partition entry array of \(count) x \(entrySize) bytes is larger than \(maximumArrayBytes) bytes")
            }
            // The array must lie inside the disk, must not contain this header, and must not overlap
            // the usable range (where partitions live).
            let (arrayStart, o1) = entriesLBA.multipliedReportingOverflow(by: UInt64(sectorSize))
            let (arrayEnd, o2) = arrayStart.addingReportingOverflow(arrayBytes)
            guard !o1, !o2, entriesLBA >= 1, arrayEnd <= (lastLBA + 1) * UInt64(sectorSize) else {
                throw bad("partition entry array at LBA \(entriesLBA) (\(arrayBytes) bytes) lies past the end of the disk")
            }
            let headerStart = lba * UInt64(sectorSize)
            if arrayBytes > 0 {
                guard arrayEnd <= headerStart || arrayStart >= headerStart + UInt64(sectorSize) else {
                    throw bad("partition entry array overlaps the header")
                }
                let usableStart = firstUsable * UInt64(sectorSize)
                let usableEnd = (lastUsable + 1) * UInt64(sectorSize)
                guard arrayEnd <= usableStart || arrayStart >= usableEnd else {
                    throw bad("partition entry array overlaps the usable range")
                }
            }
            return Header(lba: lba, alternateLBA: try r.u64(32), firstUsable: firstUsable, lastUsable: lastUsable,
                          diskUUID: try r.guid(56), entriesLBA: entriesLBA, entryCount: Int(count),
                          entrySize: Int(entrySize), entriesCRC: try r.u32(88))
        } catch is LittleEndianReader.Failure {
            throw bad("truncated")
        }
    }

    static func readTable(_ source: RandomAccessSource, header: Header, sectorSize: Int) throws -> GPTTable {
        let array = try readBytes(source, header.entriesLBA * UInt64(sectorSize), header.entryCount * header.entrySize)
        guard crc32(array) == header.entriesCRC else { throw Error.entryArrayCRCMismatch(lba: header.lba) }
        let r = LittleEndianReader(bytes: array)
        var entries: [GPTPartitionEntry] = []
        do {
            for index in 0..<header.entryCount {
                let base = index * header.entrySize
                let type = try r.guid(base)
                if type.bytes.allSatisfy({ $0 == 0 }) { continue }
                entries.append(GPTPartitionEntry(
                    number: index + 1, typeUUID: type, uuid: try r.guid(base + 16),
                    firstLBA: try r.u64(base + 32), lastLBA: try r.u64(base + 40),
                    attributes: try r.u64(base + 48), name: decodeName(try r.slice(base + 56, 72))))
            }
        } catch is LittleEndianReader.Failure {
            throw Error.badHeader(lba: header.lba, reason: "partition entry array truncated")
        }
        return GPTTable(sectorSize: sectorSize, diskUUID: header.diskUUID, firstUsableLBA: header.firstUsable,
                        lastUsableLBA: header.lastUsable, entries: entries, usedBackup: false, warnings: [])
    }

    /// Every partition inside the usable range, none overlapping another.
    static func validated(_ table: GPTTable) throws -> GPTTable {
        for e in table.entries {
            guard e.firstLBA <= e.lastLBA, e.firstLBA >= table.firstUsableLBA, e.lastLBA <= table.lastUsableLBA else {
                throw Error.partitionOutsideUsableRange(number: e.number, first: e.firstLBA, last: e.lastLBA)
            }
        }
        let sorted = table.entries.sorted { $0.firstLBA < $1.firstLBA }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.firstLBA <= a.lastLBA {
            throw Error.partitionsOverlap(min(a.number, b.number), max(a.number, b.number))
        }
        return table
    }

    /// The partition name: UTF-16LE up to the first NUL; invalid code units become U+FFFD.
    static func decodeName(_ bytes: [UInt8]) -> String {
        var units: [UInt16] = []
        var i = 0
        while i + 1 < bytes.count {
            let unit = UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
            if unit == 0 { break }
            units.append(unit)
            i += 2
        }
        return String(decoding: units, as: UTF16.self)
    }

    static func readBytes(_ source: RandomAccessSource, _ offset: UInt64, _ count: Int) throws -> [UInt8] {
        do {
            return try source.read(at: offset, count: count)
        } catch let error as RandomAccessSourceError {
            throw Error.read(error.description)
        }
    }

    /// CRC32 (IEEE, as GPT uses) through zlib.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        // zlib takes a uInt length; GPT buffers are capped far below 4 GiB.
        UInt32(truncatingIfNeeded: CZlib.crc32(0, bytes, UInt32(bytes.count)))
    }
}
