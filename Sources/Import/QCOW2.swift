import Foundation

/// qcow2 -> raw conversion (FORMATS.md section 5, QEMU's docs/interop/qcow2.txt).
///
/// Written by hand: Debian's libqcow is an alpha release and reads neither zstd-compressed clusters
/// nor every version 3 feature, and qemu-img is a tool, not a library. Only what a conversion
/// needs is read: the header, the L1 table and the L2 tables of the active image (snapshots and
/// refcounts are not used). Every offset and size in the file is checked against the file size
/// before it is used, and every allocation is bounded by the cluster size or the 32 MiB L1 limit.
///
/// Header (all fields big-endian):
///
/// | offset | size | field                                          |
/// |--------|------|------------------------------------------------|
/// | 0      | 4    | magic "QFI\xfb"                                |
/// | 4      | 4    | version (2 or 3)                               |
/// | 8      | 8    | backing_file_offset (0: none)                  |
/// | 16     | 4    | backing_file_size                              |
/// | 20     | 4    | cluster_bits (9..21)                           |
/// | 24     | 8    | size (virtual size in bytes)                   |
/// | 32     | 4    | crypt_method (0 none, 1 AES, 2 LUKS)           |
/// | 36     | 4    | l1_size (entries)                              |
/// | 40     | 8    | l1_table_offset                                |
/// | 48     | 8    | refcount_table_offset                          |
/// | 56     | 4    | refcount_table_clusters                        |
/// | 60     | 4    | nb_snapshots                                   |
/// | 64     | 8    | snapshots_offset                               |
/// | 72     | 8    | incompatible_features (v3)                     |
/// | 80     | 8    | compatible_features (v3)                       |
/// | 88     | 8    | autoclear_features (v3)                        |
/// | 96     | 4    | refcount_order (v3; v2 is always 4)            |
/// | 100    | 4    | header_length (v3)                             |
/// | 104    | 1    | compression_type (if header_length > 104): 0 zlib, 1 zstd |
///
/// L1 entry: bits 9-55 offset of an L2 table (0: unallocated), bit 63 "copied".
/// L2 entry, standard: bit 0 reads-as-zero (v3), bits 9-55 host cluster offset (0: unallocated),
/// bit 62 = 0, bit 63 "copied".
/// L2 entry, compressed (bit 62 = 1): with x = 62 - (cluster_bits - 8), bits 0..x-1 are the host
/// byte offset and bits x..61 the number of additional 512-byte sectors the data spans.
package struct QCOW2Image {
    enum Error: Swift.Error, CustomStringConvertible {
        case truncatedHeader
        case badMagic
        case unsupportedVersion(UInt32)
        case clusterBits(UInt32)
        case backingFile(String)
        case encrypted(UInt32)
        case incompatibleFeatures(String)
        case compressionType(UInt8)
        case headerLength(UInt32)
        case virtualSizeTooLarge(UInt64, UInt64)
        case l1TooSmall(UInt32, UInt64)
        case l1TooLarge(UInt32)
        case outsideFile(String, UInt64, UInt64)
        case unaligned(String, UInt64)
        case refcount(String)
        case corruptCluster(UInt64, String)

        var description: String {
            switch self {
            case .truncatedHeader: "qcow2 header is truncated"
            case .badMagic: "not a qcow2 image (bad magic)"
            case .unsupportedVersion(let v): "qcow2 version \(v) is not supported (only 2 and 3)"
            case .clusterBits(let b): "qcow2 cluster_bits \(b) is out of range (9-21)"
            case .backingFile(let name): "qcow2 image has a backing file (\(name)); images with backing files are not supported, convert with qemu-img first"
            case .encrypted(let m): "qcow2 image is encrypted (method \(m == 1 ? "AES" : m == 2 ? "LUKS" : String(m))); encrypted images are not supported"
            case .incompatibleFeatures(let what): "qcow2 image uses unsupported incompatible features: \(what)"
            case .compressionType(let t): "qcow2 compression type \(t) is not supported (only zlib and zstd)"
            case .headerLength(let l): "qcow2 header length \(l) is invalid"
            case .virtualSizeTooLarge(let size, let limit): "qcow2 virtual size \(size) exceeds the size limit of \(limit) bytes (see --max-size)"
            case .l1TooSmall(let have, let need): "qcow2 L1 table has \(have) entries, the virtual size needs \(need)"
            case .l1TooLarge(let n): "qcow2 L1 table of \(n) entries is larger than 32 MiB"
            case .outsideFile(let what, let offset, let fileSize): "qcow2 \(what) at offset \(offset) lies past the end of the file (\(fileSize) bytes)"
            case .unaligned(let what, let offset): "qcow2 \(what) offset \(offset) is not aligned to a cluster"
            case .refcount(let why): "qcow2 refcount table is invalid: \(why)"
            case .corruptCluster(let offset, let kind): "qcow2 \(kind)-compressed cluster at offset \(offset) is corrupt"
            }
        }
    }

    enum CompressionType { case zlib, zstd }

    let version: UInt32
    let clusterBits: UInt32
    package let virtualSize: UInt64
    let l1Size: UInt32
    let l1TableOffset: UInt64
    let compression: CompressionType
    let fileSize: UInt64
    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    /// Entries in one L2 table (one cluster of 8-byte entries).
    var l2Entries: UInt64 { clusterSize / 8 }

    static let maximumL1Bytes: UInt64 = 32 << 20
    private static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00

    /// Reads and checks the header of the qcow2 image in `file`.
    package init(file: InputFile, fileSize: UInt64, maximumVirtualSize: UInt64) throws {
        var head = [UInt8](repeating: 0, count: 112)
        let got = try file.read(into: &head, count: 112, at: 0)
        guard got >= 72 else { throw Error.truncatedHeader }
        func u32(_ o: Int) -> UInt32 { head[o..<(o + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        func u64(_ o: Int) -> UInt64 { head[o..<(o + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
        guard u32(0) == 0x5146_49FB else { throw Error.badMagic }
        version = u32(4)
        guard version == 2 || version == 3 else { throw Error.unsupportedVersion(version) }
        self.fileSize = fileSize

        clusterBits = u32(20)
        guard (9...21).contains(clusterBits) else { throw Error.clusterBits(clusterBits) }
        let clusterSize: UInt64 = 1 << UInt64(clusterBits)

        let backingOffset = u64(8)
        if backingOffset != 0 {
            var name = "name unreadable"
            let length = UInt64(u32(16))
            if length > 0, length <= 1023, backingOffset <= fileSize, length <= fileSize - backingOffset {
                var bytes = [UInt8](repeating: 0, count: Int(length))
                if try file.read(into: &bytes, count: Int(length), at: backingOffset) == Int(length) {
                    name = String(decoding: bytes, as: UTF8.self)
                }
            }
            throw Error.backingFile(name)
        }
        let crypt = u32(32)
        guard crypt == 0 else { throw Error.encrypted(crypt) }

        var compression = CompressionType.zlib
        var refcountOrder: UInt32 = 4
        if version == 3 {
            guard got >= 104 else { throw Error.truncatedHeader }
            let headerLength = u32(100)
            guard headerLength >= 104, UInt64(headerLength) <= clusterSize, headerLength % 8 == 0 else {
                throw Error.headerLength(headerLength)
            }
            let incompatible = u64(72)
            var refused: [String] = []
            if incompatible & (1 << 1) != 0 { refused.append("corrupt bit set") }
            if incompatible & (1 << 2) != 0 { refused.append("external data file") }
            if incompatible & (1 << 4) != 0 { refused.append("extended L2 entries") }
            let known: UInt64 = 0b11111
            if incompatible & ~known != 0 { refused.append(String(format: "unknown bits 0x%llx", incompatible & ~known)) }
            // Bit 0 (dirty) only means the refcounts may be stale; they are not used here.
            if !refused.isEmpty { throw Error.incompatibleFeatures(refused.joined(separator: ", ")) }
            if incompatible & (1 << 3) != 0 {
                guard headerLength > 104, got > 104 else { throw Error.headerLength(headerLength) }
                switch head[104] {
                case 0: compression = .zlib
                case 1: compression = .zstd
                default: throw Error.compressionType(head[104])
                }
            }
            refcountOrder = u32(96)
        }
        self.compression = compression
        guard refcountOrder <= 6 else { throw Error.refcount("refcount_order \(refcountOrder) is larger than 6") }
        let refcountOffset = u64(48)
        let refcountClusters = UInt64(u32(56))
        guard refcountClusters > 0 else { throw Error.refcount("it has no clusters") }
        guard refcountOffset % clusterSize == 0 else { throw Error.refcount("offset \(refcountOffset) is not cluster aligned") }
        guard refcountOffset < fileSize, refcountClusters <= (fileSize - refcountOffset) / clusterSize else {
            throw Error.refcount("\(refcountClusters) clusters at offset \(refcountOffset) lie past the end of the file")
        }

        virtualSize = u64(24)
        guard virtualSize <= maximumVirtualSize else { throw Error.virtualSizeTooLarge(virtualSize, maximumVirtualSize) }
        l1Size = u32(36)
        l1TableOffset = u64(40)
        let bytesPerL1Entry = clusterSize * (clusterSize / 8)
        let needed = virtualSize / bytesPerL1Entry + (virtualSize % bytesPerL1Entry == 0 ? 0 : 1)
        guard UInt64(l1Size) >= needed else { throw Error.l1TooSmall(l1Size, needed) }
        guard UInt64(l1Size) * 8 <= Self.maximumL1Bytes else { throw Error.l1TooLarge(l1Size) }
        if needed > 0 {
            guard l1TableOffset % clusterSize == 0 else { throw Error.unaligned("L1 table", l1TableOffset) }
            guard l1TableOffset < fileSize, needed * 8 <= fileSize - l1TableOffset else {
                throw Error.outsideFile("L1 table", l1TableOffset, fileSize)
            }
        }
    }

    /// Writes the virtual disk to `writer`: unallocated and zero clusters become holes.
    ///
    /// The tables form a fixed two-level tree walked once in virtual order, so a hostile image
    /// cannot make it loop: entries pointing at the same host cluster, at the header or at another
    /// table only produce odd data, and the output never exceeds the checked virtual size.
    package func convert(file: InputFile, to writer: SparseWriter, cancelled: () throws -> Void) throws {
        let clusterSize = Int(self.clusterSize)
        let perL1 = self.clusterSize * l2Entries
        let needed = Int(virtualSize / perL1 + (virtualSize % perL1 == 0 ? 0 : 1))
        var l1 = [UInt8](repeating: 0, count: needed * 8)
        if needed > 0 {
            guard try file.read(into: &l1, count: needed * 8, at: l1TableOffset) == needed * 8 else {
                throw Error.outsideFile("L1 table", l1TableOffset, fileSize)
            }
        }
        var l2 = [UInt8](repeating: 0, count: clusterSize)
        var cluster = [UInt8](repeating: 0, count: clusterSize)
        // A compressed cluster spans at most one cluster plus its sector rounding (qemu limits it
        // to cluster_size); bounded by the cluster-size field width either way.
        var compressed = [UInt8](repeating: 0, count: 2 * clusterSize + 512)
        var virtual: UInt64 = 0

        func entry(_ table: [UInt8], _ index: Int) -> UInt64 {
            table[(index * 8)..<(index * 8 + 8)].reduce(0) { $0 << 8 | UInt64($1) }
        }

        for l1Index in 0..<needed {
            try cancelled()
            let span = min(perL1, virtualSize - virtual)
            let l2Offset = entry(l1, l1Index) & Self.offsetMask
            if l2Offset == 0 {
                writer.skip(span)
                virtual += span
                continue
            }
            guard l2Offset % self.clusterSize == 0 else { throw Error.unaligned("L2 table", l2Offset) }
            guard l2Offset < fileSize, self.clusterSize <= fileSize - l2Offset else {
                throw Error.outsideFile("L2 table", l2Offset, fileSize)
            }
            guard try file.read(into: &l2, count: clusterSize, at: l2Offset) == clusterSize else {
                throw Error.outsideFile("L2 table", l2Offset, fileSize)
            }
            var l2Index = 0
            while virtual < virtualSize && l2Index < Int(l2Entries) {
                let length = Int(min(self.clusterSize, virtualSize - virtual))
                let l2Entry = entry(l2, l2Index)
                l2Index += 1
                if l2Entry & (1 << 62) != 0 {
                    let data = try readCompressed(l2Entry, file: file, into: &compressed)
                    try writer.write(data, count: length)
                } else if version == 3 && l2Entry & 1 != 0 {
                    writer.skip(UInt64(length))  // reads as zeros
                } else {
                    let host = l2Entry & Self.offsetMask
                    if host == 0 {
                        writer.skip(UInt64(length))  // unallocated, no backing file: zeros
                    } else {
                        guard host % self.clusterSize == 0 else { throw Error.unaligned("data cluster", host) }
                        guard host < fileSize, UInt64(length) <= fileSize - host else {
                            throw Error.outsideFile("data cluster", host, fileSize)
                        }
                        guard try file.read(into: &cluster, count: length, at: host) == length else {
                            throw Error.outsideFile("data cluster", host, fileSize)
                        }
                        try writer.write(cluster, count: length)
                    }
                }
                virtual += UInt64(length)
            }
        }
    }

    /// Reads and decompresses the cluster a compressed L2 entry describes.
    private func readCompressed(_ l2Entry: UInt64, file: InputFile, into buffer: inout [UInt8]) throws -> [UInt8] {
        let x = 62 - (UInt64(clusterBits) - 8)
        let offset = l2Entry & ((1 << x) - 1)
        let sectors = (l2Entry >> x) & ((1 << (UInt64(clusterBits) - 8)) - 1)
        guard offset < fileSize else { throw Error.outsideFile("compressed cluster", offset, fileSize) }
        // The data ends within the last sector named; the file may end before that sector does.
        let span = (sectors + 1) * 512 - (offset & 511)
        let length = Int(min(span, fileSize - offset, UInt64(buffer.count)))
        let got = try file.read(into: &buffer, count: length, at: offset)
        let kind = compression == .zlib ? "zlib" : "zstd"
        let result: [UInt8]?
        switch compression {
        case .zlib: result = RawDeflate.inflate(buffer, 0..<got, outputSize: Int(clusterSize))
        case .zstd: result = ZstdCluster.decompress(buffer, 0..<got, outputSize: Int(clusterSize))
        }
        guard let result else { throw Error.corruptCluster(offset, kind) }
        return result
    }
}
