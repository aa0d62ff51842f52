import Foundation
import LinuxSystem

/// Options for `Dissector.dissect`.
public struct DissectOptions: Sendable {
    /// Verity options given on the command line (root hash, signature, hash tree file).
    public var verity: ExplicitVerityOptions
    /// Refuse an image without a root (or usr) partition [ENXIO].
    public var requireRoot: Bool
    /// Read the signature partitions and merge their root hashes (as systemd-dissect does).
    public var loadSignaturePartitions: Bool

    public init(verity: ExplicitVerityOptions = ExplicitVerityOptions(), requireRoot: Bool = true, loadSignaturePartitions: Bool = true) {
        self.verity = verity
        self.requireRoot = requireRoot
        self.loadSignaturePartitions = loadSignaturePartitions
    }
}

/// From image bytes to a `DissectedImage`: partition table, designators, duplicate resolution,
/// verity pairing, filesystem probing. No mounts, no loop devices, no privileges for a file.
public enum Dissector {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case noPartitionTableOrFilesystem(String)
        case verityWithoutData(PartitionDesignator)
        case signatureWithoutVerity(PartitionDesignator)
        case architectureMismatch(root: String, usr: String)
        case multipleGeneric
        case bothVerity
        case noRoot
        case noPartitionMatchesRootHash(PartitionDesignator, String)
        case ambiguousContent(String)

        public var description: String {
            switch self {
            case .noPartitionTableOrFilesystem(let path):
                "\(path): no partition table and no filesystem found (not a disk image)"
            case .verityWithoutData(let d):
                "\(d.rawValue) partition found without its data partition \(d.dataDesignator?.rawValue ?? "") [EADDRNOTAVAIL]"
            case .signatureWithoutVerity(let d):
                "\(d.rawValue) partition found without its verity partition [EADDRNOTAVAIL]"
            case .architectureMismatch(let root, let usr):
                "root (\(root)) and usr (\(usr)) partitions are for different architectures [EADDRNOTAVAIL]"
            case .multipleGeneric:
                "no root partition and more than one generic Linux partition: cannot pick one [ENOTUNIQ]"
            case .bothVerity:
                "both a root-verity and a usr-verity partition match: cannot tell which the root hash is for [ENOTUNIQ]"
            case .noRoot:
                "no root or usr partition found [ENXIO]"
            case .noPartitionMatchesRootHash(let d, let uuid):
                "no \(d.rawValue) partition has the UUID \(uuid) that the root hash requires [ENXIO]"
            case .ambiguousContent(let what):
                what
            }
        }
    }

    /// A partition-table row before designators are decided.
    struct Candidate {
        var number: Int?
        var typeUUID: UUID?
        var uuid: UUID?
        var label: String?
        var offset: UInt64
        var size: UInt64
        var attributes: UInt64
        var type: PartitionType?
        var isGeneric: Bool
    }

    /// Dissects the image at `path` (file or block device).
    public static func dissect(path: String, options: DissectOptions = DissectOptions()) throws -> DissectedImage {
        let file = try ImageFile(path: path)
        var verity = try VerityDiscovery.discover(imagePath: path, isBlockDevice: file.isBlockDevice, explicit: options.verity)
        var image = try dissect(source: file, fd: file.descriptor.rawValue, sectorSize: file.logicalSectorSize,
                                verity: &verity, options: options, name: path)
        image.path = path
        image.isBlockDevice = file.isBlockDevice
        return image
    }

    /// Dissects bytes from `source`; `fd` (the same bytes) is what libblkid probes.
    static func dissect(source: RandomAccessSource, fd: Int32, sectorSize: Int?, verity: inout VeritySettings,
                        options: DissectOptions, name: String) throws -> DissectedImage {
        var warnings: [String] = []
        var candidates: [Candidate] = []
        var table = PartitionTableKind.none
        var diskUUID: UUID?
        var usedSectorSize = sectorSize ?? 512

        let sizes = sectorSize.map { [$0] } ?? [512, 4096]
        if let gpt = try GPT.parse(source, sectorSizes: sizes) {
            table = .gpt
            diskUUID = gpt.diskUUID
            usedSectorSize = gpt.sectorSize
            warnings += gpt.warnings
            let ss = UInt64(gpt.sectorSize)
            for entry in gpt.entries {
                candidates.append(Candidate(
                    number: entry.number, typeUUID: entry.typeUUID, uuid: entry.uuid, label: entry.name,
                    offset: entry.firstLBA * ss, size: (entry.lastLBA - entry.firstLBA + 1) * ss,
                    attributes: entry.attributes, type: PartitionType.from(typeUUID: entry.typeUUID),
                    isGeneric: entry.typeUUID == PartitionType.linuxGeneric))
            }
        } else if let whole = try Blkid.probe(fd: fd, offset: 0, size: source.size), whole.usage == "filesystem" || whole.usage == "crypto" {
            // A filesystem at offset 0 (a FAT boot sector also ends in 0x55AA, so this comes first).
            let root = DissectedPartition(
                designator: .root, number: nil, uuid: nil, typeUUID: nil, label: nil,
                fstype: whole.type, fsUUID: whole.uuid, fsLabel: whole.label, architecture: nil,
                offset: 0, size: source.size, readOnly: false, growFileSystem: false,
                verity: bareVerityState(verity))
            var image = DissectedImage(path: name, size: source.size, isBlockDevice: false, isDirectory: false,
                                       table: .none, sectorSize: usedSectorSize, diskUUID: nil,
                                       partitions: [root], warnings: warnings, verity: verity, metadata: nil)
            if root.verity != nil || readOnlyFilesystems.contains(whole.type) { image.partitions[0].readOnly = true }
            return image
        } else if let mbr = try MBR.parse(sector0: try source.read(at: 0, count: min(512, Int(source.size))), imageSize: source.size), !mbr.isEmpty {
            table = .mbr
            usedSectorSize = 512
            let linux = mbr.filter { $0.type == MBR.linuxType }
            // systemd takes the bootable Linux partition; a single Linux partition without the
            // flag is taken too (images made by sfdisk often lack it).
            let bootable = linux.filter(\.bootable)
            let chosen = bootable.count >= 1 ? bootable : linux
            if chosen.count > 1 { throw Error.multipleGeneric }
            for entry in mbr {
                if entry.type == MBR.xbootldrType {
                    candidates.append(Candidate(number: entry.number, typeUUID: nil, uuid: nil, label: nil,
                                                offset: entry.offset, size: entry.size, attributes: 0,
                                                type: PartitionType(designator: .xbootldr), isGeneric: false))
                } else if chosen.contains(entry) {
                    candidates.append(Candidate(number: entry.number, typeUUID: nil, uuid: nil, label: nil,
                                                offset: entry.offset, size: entry.size, attributes: 0,
                                                type: nil, isGeneric: true))
                }
            }
        } else {
            throw Error.noPartitionTableOrFilesystem(name)
        }

        // Signature partitions carry the root hash: load them before pairing (systemd-dissect
        // does the same), so that a signed image shows "signed" without any option.
        if options.loadSignaturePartitions {
            for designator in [PartitionDesignator.rootVeritySignature, .usrVeritySignature] {
                guard let sig = pick(candidates.filter { $0.type?.designator == designator && !noAuto($0) }, designator: designator, warnings: &warnings) else { continue }
                let count = Int(min(sig.size, UInt64(VeritySignatureJSON.maximumSize) + 1))
                let json = try VeritySignatureJSON.parse(try source.read(at: sig.offset, count: count))
                try VerityDiscovery.merge(signaturePartition: json, into: &verity, designator: designator.dataDesignator?.rawValue ?? "root")
            }
        }

        // Decide one partition per designator.
        var chosen: [PartitionDesignator: Candidate] = [:]
        for designator in PartitionDesignator.allCases {
            var matching = candidates.filter { $0.type?.designator == designator }
            if designator != .esp {
                // The no-auto attribute is defined for every DPS type except the ESP.
                let skipped = matching.filter(noAuto)
                for s in skipped { warnings.append("partition \(s.number ?? 0) (\(designator.rawValue)) has the no-auto flag: ignored") }
                matching.removeAll(where: noAuto)
            }
            // A known root hash names its data and hash-tree partitions by UUID.
            if let (hash, isData) = pairingHash(designator, verity), hash.count >= 16 {
                let half: [UInt8] = isData ? Array(hash.prefix(16)) : Array(hash.suffix(16))
                let wanted = UUID.fromBytes(half)
                let before = matching
                matching = matching.filter { $0.uuid == wanted }
                if matching.isEmpty && !before.isEmpty {
                    throw Error.noPartitionMatchesRootHash(designator, wanted.lowercased)
                }
            }
            if let c = pick(matching, designator: designator, warnings: &warnings) { chosen[designator] = c }
        }

        // A single generic Linux partition is the root when nothing else claims to be.
        if chosen[.root] == nil && chosen[.usr] == nil {
            let generic = candidates.filter { $0.isGeneric && !noAuto($0) }
            if generic.count > 1 { throw Error.multipleGeneric }
            if let g = generic.first { chosen[.root] = g }
        }

        // Consistency (systemd's errors).
        for verityDesignator in [PartitionDesignator.rootVerity, .usrVerity] where chosen[verityDesignator] != nil {
            if let data = verityDesignator.dataDesignator, chosen[data] == nil { throw Error.verityWithoutData(verityDesignator) }
        }
        for sig in [PartitionDesignator.rootVeritySignature, .usrVeritySignature] where chosen[sig] != nil {
            guard let data = sig.dataDesignator, let verityD = data.verityDesignator else { continue }
            if chosen[verityD] == nil { throw Error.signatureWithoutVerity(sig) }
        }
        if let r = chosen[.root]?.type?.architecture, let u = chosen[.usr]?.type?.architecture, r != u {
            throw Error.architectureMismatch(root: r.rawValue, usr: u.rawValue)
        }
        if chosen[.rootVerity] != nil, chosen[.usrVerity] != nil, verity.rootHash != nil, verity.usrHash == nil,
           verity.rootHashSource == "option" {
            // An explicit --root-hash cannot say which tree it is for when both exist.
            throw Error.bothVerity
        }
        if options.requireRoot, chosen[.root] == nil, chosen[.usr] == nil { throw Error.noRoot }

        // Build the partitions, probing each one's content.
        var partitions: [DissectedPartition] = []
        for (designator, c) in chosen.sorted(by: { $0.key < $1.key }) {
            let content: ProbedContent?
            do {
                content = try Blkid.probe(fd: fd, offset: c.offset, size: c.size)
            } catch let error as Blkid.Error {
                throw Error.ambiguousContent("partition \(c.number ?? 0) (\(designator.rawValue)): \(error)")
            }
            var p = DissectedPartition(
                designator: designator, number: c.number, uuid: c.uuid, typeUUID: c.typeUUID, label: c.label,
                fstype: content?.type, fsUUID: content?.uuid, fsLabel: content?.label,
                architecture: c.type?.architecture, offset: c.offset, size: c.size,
                readOnly: c.attributes & GPTPartitionEntry.attributeReadOnly != 0,
                growFileSystem: c.attributes & GPTPartitionEntry.attributeGrowFileSystem != 0,
                verity: nil)
            if let type = p.fstype, readOnlyFilesystems.contains(type) { p.readOnly = true; p.growFileSystem = false }
            if c.isGeneric && c.type == nil {
                // As systemd: a generic partition adopted as root carries no label.
                p.label = nil
            }
            switch designator {
            case .root, .usr:
                p.verity = verityState(designator, chosen: chosen, verity: verity)
                if let state = p.verity, state != .no {
                    // Verity-protected data is read-only and cannot be grown.
                    p.readOnly = true
                    p.growFileSystem = false
                }
            case .rootVerity, .usrVerity, .rootVeritySignature, .usrVeritySignature:
                // libblkid does not know the signature JSON; systemd names it so.
                if p.fstype == nil, designator == .rootVeritySignature || designator == .usrVeritySignature {
                    p.fstype = "verity_hash_signature"
                }
                p.readOnly = true
                p.growFileSystem = false
            default: break
            }
            partitions.append(p)
        }
        let ignored = candidates.filter { c in c.type == nil && !c.isGeneric }
        for c in ignored { warnings.append("partition \(c.number ?? 0) has a type this tool does not mount (\(c.typeUUID?.lowercased ?? "?")): ignored") }

        return DissectedImage(path: name, size: source.size, isBlockDevice: false, isDirectory: false, table: table,
                              sectorSize: usedSectorSize, diskUUID: diskUUID, partitions: partitions,
                              warnings: warnings, verity: verity, metadata: nil)
    }

    /// Filesystems that can only be mounted read-only (systemd's fstype_is_ro).
    static let readOnlyFilesystems: Set<String> = ["squashfs", "erofs", "iso9660", "cramfs", "romfs"]

    static func noAuto(_ c: Candidate) -> Bool { c.attributes & GPTPartitionEntry.attributeNoAuto != 0 }

    /// Among several partitions of one designator: the native architecture first; then for the
    /// versioned designators (root, usr and their verity partitions) the highest label in
    /// strverscmp order (A/B updates); otherwise the first in table order.
    static func pick(_ matching: [Candidate], designator: PartitionDesignator, warnings: inout [String]) -> Candidate? {
        guard var best = matching.first else { return nil }
        for c in matching.dropFirst() {
            let bestNative = best.type?.architecture == Architecture.native
            let cNative = c.type?.architecture == Architecture.native
            if cNative != bestNative {
                if cNative { best = c }
                continue
            }
            if designator.isArchitectureSpecific, strverscmp(c.label ?? "", best.label ?? "") > 0 { best = c }
        }
        if matching.count > 1 {
            warnings.append("\(matching.count) \(designator.rawValue) partitions: using partition \(best.number ?? 0)\(best.label.map { " (\($0))" } ?? "")")
        }
        return best
    }

    /// The root hash that pairs partitions of `designator` by UUID, and whether the designator is
    /// the data (first half) or the hash tree (second half).
    static func pairingHash(_ designator: PartitionDesignator, _ verity: VeritySettings) -> ([UInt8], Bool)? {
        switch designator {
        case .root: verity.rootHash.map { ($0, true) }
        case .rootVerity: verity.rootHash.map { ($0, false) }
        case .usr: verity.usrHash.map { ($0, true) }
        case .usrVerity: verity.usrHash.map { ($0, false) }
        default: nil
        }
    }

    static func verityState(_ designator: PartitionDesignator, chosen: [PartitionDesignator: Candidate], verity: VeritySettings) -> VerityState? {
        let info = verity.hash(for: designator.rawValue)
        let hasTreePartition = designator.verityDesignator.map { chosen[$0] != nil } ?? false
        if hasTreePartition {
            guard info.hash != nil else { return .no }
            return info.signature != nil ? .signed : .yes
        }
        if designator == .root, info.hash != nil, verity.verityDataPath != nil { return .external }
        // In a partitioned image root and usr are verity candidates: "no" (as systemd-dissect).
        return .no
    }

    static func bareVerityState(_ verity: VeritySettings) -> VerityState? {
        guard verity.rootHash != nil, verity.verityDataPath != nil else { return nil }
        return .external
    }
}
