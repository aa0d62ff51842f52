import Foundation

/// What growing a GPT disk needs written: the backup partition array and backup header moved to
/// the new last LBAs, the primary header's alternate LBA and last usable LBA (and CRC) rewritten,
/// the protective MBR's 0xEE record widened, and the old backup header wiped. Without this the
/// guest's kernel sees a disk whose backup GPT is in the middle (it warns, and tools such as
/// growpart or systemd-repart first have to repair the table); with it the free space at the end
/// is usable at once, as `sgdisk -e` leaves a disk.
///
/// Pure: it reads the disk as it is (before the file is grown) through a RandomAccessSource and
/// returns byte writes; the caller grows the file and applies them in order. The order keeps a
/// crash between writes harmless: the new backup first (the primary still names the old one),
/// then the primary, then the wipe of the old backup.
public enum GPTRelocation {
    public struct Write: Sendable, Equatable {
        public var offset: UInt64
        public var bytes: [UInt8]
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case damaged(String)
        case notSectorMultiple(size: UInt64, sectorSize: Int)
        case tooSmall(newSize: UInt64, lastUsed: UInt64)

        public var description: String {
            switch self {
            case .damaged(let why): "its GPT cannot be moved: \(why)"
            case .notSectorMultiple(let size, let sectorSize): "\(size) bytes is not a multiple of the GPT's sector size (\(sectorSize) bytes)"
            case .tooSmall(let size, let last): "\(size) bytes leaves no room for the partitions (the last ends at byte \(last)) and the backup GPT"
            }
        }
    }

    /// The writes that move the GPT of `source` (the disk at its current size) to a disk of
    /// `newSize` bytes; nil when the disk has no GPT (no protective MBR), [] when nothing moves.
    public static func plan(_ source: RandomAccessSource, newSize: UInt64) throws -> [Write]? {
        let table: GPTTable
        do {
            guard let parsed = try GPT.parse(source) else { return nil }
            table = parsed
        } catch let error as GPT.Error {
            throw Error.damaged(error.description)
        }
        // A damaged primary would be rewritten from itself: repair first (e.g. sgdisk -e).
        guard !table.usedBackup else { throw Error.damaged(table.warnings.joined(separator: "; ")) }
        let sectorSize = table.sectorSize
        let sector = UInt64(sectorSize)
        guard newSize % sector == 0 else { throw Error.notSectorMultiple(size: newSize, sectorSize: sectorSize) }
        let oldLastLBA = source.size / sector - 1
        let newLastLBA = newSize / sector - 1

        let header: GPT.Header
        let headerSector: [UInt8]
        let array: [UInt8]
        do {
            header = try GPT.readHeader(source, lba: 1, sectorSize: sectorSize, lastLBA: oldLastLBA)
            headerSector = try GPT.readBytes(source, sector, sectorSize)
            array = try GPT.readBytes(source, header.entriesLBA * sector, header.entryCount * header.entrySize)
        } catch let error as GPT.Error {
            throw Error.damaged(error.description)
        }
        let headerSize = Int(headerSector[12]) | Int(headerSector[13]) << 8 | Int(headerSector[14]) << 16 | Int(headerSector[15]) << 24
        let arraySectors = (UInt64(array.count) + sector - 1) / sector
        guard newLastLBA > arraySectors + 1 else { throw Error.tooSmall(newSize: newSize, lastUsed: (table.lastUsableLBA + 1) * sector) }
        let newArrayLBA = newLastLBA - arraySectors
        let newLastUsable = newArrayLBA - 1
        let lastUsed = table.entries.map(\.lastLBA).max() ?? table.firstUsableLBA
        guard newLastUsable >= lastUsed else { throw Error.tooSmall(newSize: newSize, lastUsed: (lastUsed + 1) * sector) }
        if newLastLBA == header.alternateLBA && newLastUsable == table.lastUsableLBA { return [] }

        var primary = headerSector
        put64(&primary, 32, newLastLBA)
        put64(&primary, 48, newLastUsable)
        sealHeader(&primary, size: headerSize)
        var backup = primary
        put64(&backup, 24, newLastLBA)
        put64(&backup, 32, 1)
        put64(&backup, 72, newArrayLBA)
        sealHeader(&backup, size: headerSize)

        var paddedArray = array
        paddedArray += [UInt8](repeating: 0, count: Int(arraySectors * sector) - array.count)
        var writes = [Write(offset: newArrayLBA * sector, bytes: paddedArray),
                      Write(offset: newLastLBA * sector, bytes: backup),
                      Write(offset: sector, bytes: primary)]
        // The protective MBR's 0xEE record spans the disk (capped at 2^32-1 sectors); fdisk and
        // sfdisk warn about a size mismatch otherwise. A hybrid MBR's narrower record is kept.
        if var mbr = try? GPT.readBytes(source, 0, 512) {
            let oldSpan = UInt32(clamping: oldLastLBA)
            for record in 0..<4 where mbr[446 + record * 16 + 4] == 0xEE {
                let at = 446 + record * 16 + 12
                let span = UInt32(mbr[at]) | UInt32(mbr[at + 1]) << 8 | UInt32(mbr[at + 2]) << 16 | UInt32(mbr[at + 3]) << 24
                guard span == oldSpan else { continue }
                let newSpan = UInt32(clamping: newLastLBA)
                for i in 0..<4 { mbr[at + i] = UInt8(truncatingIfNeeded: newSpan >> (8 * UInt32(i))) }
                writes.append(Write(offset: 0, bytes: mbr))
            }
        }
        // The old backup header would otherwise still read as a GPT header inside the disk.
        if header.alternateLBA != newLastLBA, header.alternateLBA < newLastLBA, header.alternateLBA > 1,
           (try? GPT.readBytes(source, header.alternateLBA * sector, 8)) == GPT.signature {
            writes.append(Write(offset: header.alternateLBA * sector, bytes: [UInt8](repeating: 0, count: sectorSize)))
        }
        return writes
    }

    static func put64(_ bytes: inout [UInt8], _ at: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    /// The header CRC over `size` bytes with the CRC field counted as zero.
    static func sealHeader(_ bytes: inout [UInt8], size: Int) {
        for i in 16..<20 { bytes[i] = 0 }
        let crc = GPT.crc32(Array(bytes[0..<size]))
        for i in 0..<4 { bytes[16 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
    }
}
