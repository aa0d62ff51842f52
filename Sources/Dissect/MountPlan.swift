import Foundation
import Glibc

/// Where a planned mount goes inside the image's tree.
public enum MountTarget: Sendable, Equatable, Codable, CustomStringConvertible {
    /// A fixed path ("/", "/usr", "/home", ...).
    case path(String)
    /// The ESP rule of FORMATS.md §1: /efi when it exists in the tree; else /boot when it exists,
    /// is empty and no XBOOTLDR partition is mounted there; else /efi if mount points may be
    /// created; else the ESP is not mounted. Needs the tree, so it is decided when applying.
    case espDirectory

    public var description: String {
        switch self {
        case .path(let p): p
        case .espDirectory: "/efi or /boot"
        }
    }
}

/// What to mount from.
public enum MountSource: Sendable, Equatable, Codable {
    /// A byte range of the image (one loop device with offset and size limit).
    case partition(number: Int?, offset: UInt64, size: UInt64)
    /// An empty tmpfs (the root of a usr-only image).
    case tmpfs
}

/// Verity that must be satisfied before the data is mounted.
public struct VerityRequirement: Sendable, Equatable, Codable {
    public var rootHash: [UInt8]
    /// PKCS#7 signature of the hex root hash; checked against the trusted keyring before mounting.
    public var signature: [UInt8]?
    /// SHA-256 of the signing certificate, when the signature partition names it.
    public var certificateFingerprint: [UInt8]? = nil
    /// Hash tree in the image (offset/size of the verity partition) ...
    public var hashOffset: UInt64?
    public var hashSize: UInt64?
    /// ... or in an external file.
    public var hashFile: String?
}

/// One mount of a plan.
public struct PlannedMount: Sendable, Equatable, Codable {
    public var designator: PartitionDesignator?
    public var source: MountSource
    public var fstype: String
    /// Filesystem options passed as mount data ("norecovery", "umask=0077", ...).
    public var options: [String]
    public var target: MountTarget
    public var readOnly: Bool
    public var noSuid: Bool
    public var noExec: Bool
    /// Always true (FORMATS.md §1: device nodes in an image never work).
    public var noDev: Bool
    public var verity: VerityRequirement?
    /// LUKS: needs device-mapper to unlock.
    public var encrypted: Bool
}

/// The ordered mounts that assemble an image's tree, built from a `DissectedImage` without side
/// effects (no I/O). The order is FORMATS.md §1: root (tmpfs if only /usr exists), /usr, /home,
/// /srv, /var, /var/tmp, XBOOTLDR on /boot, the ESP; swap is never mounted.
public struct MountPlan: Sendable, Equatable, Codable {
    public var imagePath: String
    public var mounts: [PlannedMount]

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case nothingToMount
        case noFilesystem(PartitionDesignator, Int?)

        public var description: String {
            switch self {
            case .nothingToMount: "the image has no root or usr partition to mount"
            case .noFilesystem(let d, let n): "partition \(n.map(String.init) ?? "-") (\(d.rawValue)) holds no recognised filesystem"
            }
        }
    }

    /// Attributes every mount of an image gets (MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID for the
    /// private inspection mounts).
    public static let secureAttributes = UInt32(MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID)

    static let order: [(PartitionDesignator, String)] = [
        (.root, "/"), (.usr, "/usr"), (.home, "/home"), (.srv, "/srv"), (.var, "/var"), (.tmp, "/var/tmp"), (.xbootldr, "/boot"),
    ]

    /// Builds the plan. `readOnly` makes every mount read-only; read-only and verity-protected
    /// partitions are read-only regardless.
    public static func make(_ image: DissectedImage, readOnly: Bool = false) throws -> MountPlan {
        var mounts: [PlannedMount] = []
        if image.partition(.root) == nil {
            guard image.partition(.usr) != nil else { throw Error.nothingToMount }
            mounts.append(PlannedMount(designator: nil, source: .tmpfs, fstype: "tmpfs", options: ["mode=0755"],
                                       target: .path("/"), readOnly: readOnly, noSuid: false, noExec: false, noDev: true,
                                       verity: nil, encrypted: false))
        }
        for (designator, path) in order {
            guard let p = image.partition(designator) else { continue }
            mounts.append(try planned(p, target: .path(path), image: image, readOnly: readOnly))
        }
        if let esp = image.partition(.esp) {
            mounts.append(try planned(esp, target: .espDirectory, image: image, readOnly: readOnly))
        }
        return MountPlan(imagePath: image.path, mounts: mounts)
    }

    static func planned(_ p: DissectedPartition, target: MountTarget, image: DissectedImage, readOnly: Bool) throws -> PlannedMount {
        guard let fstype = p.fstype, p.fstype != "DM_verity_hash" else { throw Error.noFilesystem(p.designator, p.number) }
        let verity = requirement(p, image: image)
        let ro = readOnly || p.readOnly || verity != nil
        let boot = p.designator == .esp || p.designator == .xbootldr
        return PlannedMount(designator: p.designator, source: .partition(number: p.number, offset: p.offset, size: p.size),
                            fstype: fstype, options: p.isEncrypted ? [] : dataOptions(fstype: fstype, readOnly: ro, designator: p.designator).map(optionText),
                            target: target, readOnly: ro, noSuid: boot, noExec: boot, noDev: true,
                            verity: verity, encrypted: p.isEncrypted)
    }

    /// What verity demands of a root/usr partition, or nil when it is not verity-protected.
    public static func requirement(_ p: DissectedPartition, image: DissectedImage) -> VerityRequirement? {
        guard let state = p.verity, state != .no, let data = p.designator == .root || p.designator == .usr ? p.designator : nil else { return nil }
        let info = image.verity.hash(for: data.rawValue)
        guard let hash = info.hash else { return nil }
        if state == .external {
            return VerityRequirement(rootHash: hash, signature: info.signature, certificateFingerprint: info.fingerprint,
                                     hashOffset: nil, hashSize: nil, hashFile: image.verity.verityDataPath)
        }
        guard let tree = data.verityDesignator.flatMap(image.partition) else { return nil }
        return VerityRequirement(rootHash: hash, signature: info.signature, certificateFingerprint: info.fingerprint,
                                 hashOffset: tree.offset, hashSize: tree.size, hashFile: nil)
    }

    /// Filesystem options for a mount: `norecovery` for read-only ext4/xfs/btrfs (a journal replay
    /// would write to a read-only image), and for the ESP/XBOOTLDR on vfat `umask=0077`.
    /// Returned as (key, value) pairs for fsconfig; `optionText` renders them for mount(2).
    public static func dataOptions(fstype: String, readOnly: Bool, designator: PartitionDesignator?) -> [(String, String?)] {
        var options: [(String, String?)] = []
        if readOnly, ["ext4", "xfs", "btrfs"].contains(fstype) { options.append(("norecovery", nil)) }
        if fstype == "vfat", designator == .esp || designator == .xbootldr { options.append(("umask", "0077")) }
        return options
    }

    static func optionText(_ option: (String, String?)) -> String {
        option.1.map { "\(option.0)=\($0)" } ?? option.0
    }
}
