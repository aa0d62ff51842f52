import CBlkid
import Foundation

/// What libblkid found in a byte range: filesystem (or other content) type, UUID, label, usage.
public struct ProbedContent: Sendable, Equatable {
    /// libblkid's TYPE: "ext4", "btrfs", "xfs", "squashfs", "erofs", "vfat", "crypto_LUKS",
    /// "DM_verity_hash", "swap", ...
    public var type: String
    public var uuid: String?
    public var label: String?
    /// libblkid's USAGE: "filesystem", "crypto", "raid", "other".
    public var usage: String?

    /// True for a LUKS container (unlocking needs device-mapper).
    public var isLUKS: Bool { type == "crypto_LUKS" }
}

/// Filesystem probing through libblkid, on a range of an open image: `blkid_probe_set_device`
/// takes an offset and size, so no loop device is needed to look inside a partition.
public enum Blkid {
    public enum Error: Swift.Error, CustomStringConvertible {
        case probeFailed(String)
        case ambivalent(offset: UInt64)

        public var description: String {
            switch self {
            case .probeFailed(let what): "libblkid: \(what)"
            case .ambivalent(let offset): "libblkid found more than one filesystem signature at offset \(offset) (ambivalent result)"
            }
        }
    }

    // BLKID_SUBLKS_* are macros; their values from blkid.h (stable ABI since util-linux 2.15).
    static let sublksLabel: Int32 = 1 << 1
    static let sublksUUID: Int32 = 1 << 3
    static let sublksType: Int32 = 1 << 5
    static let sublksUsage: Int32 = 1 << 7

    /// Probes `size` bytes at `offset` of the file or block device `fd` (not taken over, not
    /// closed). Returns nil when nothing is recognised.
    public static func probe(fd: Int32, offset: UInt64, size: UInt64) throws -> ProbedContent? {
        guard let probe = blkid_new_probe() else { throw Error.probeFailed("blkid_new_probe failed") }
        defer { blkid_free_probe(probe) }
        guard offset <= UInt64(Int64.max), size <= UInt64(Int64.max) else { throw Error.probeFailed("range out of bounds") }
        if blkid_probe_set_device(probe, fd, blkid_loff_t(offset), blkid_loff_t(size)) != 0 {
            throw Error.probeFailed("blkid_probe_set_device at offset \(offset) size \(size) failed")
        }
        blkid_probe_enable_superblocks(probe, 1)
        blkid_probe_set_superblocks_flags(probe, sublksLabel | sublksUUID | sublksType | sublksUsage)
        // Partition tables are parsed by GPT.swift/MBR.swift; here only content is identified.
        blkid_probe_enable_partitions(probe, 0)
        switch blkid_do_safeprobe(probe) {
        case 0: break
        case 1: return nil
        case -2: throw Error.ambivalent(offset: offset)
        default: throw Error.probeFailed("blkid_do_safeprobe failed at offset \(offset)")
        }
        guard let type = value(probe, "TYPE") else { return nil }
        return ProbedContent(type: type, uuid: value(probe, "UUID"), label: value(probe, "LABEL"), usage: value(probe, "USAGE"))
    }

    private static func value(_ probe: blkid_probe, _ name: String) -> String? {
        var data: UnsafePointer<CChar>? = nil
        var length = 0
        guard blkid_probe_lookup_value(probe, name, &data, &length) == 0, let data else { return nil }
        let text = String(cString: data)
        return text.isEmpty ? nil : text
    }
}
