import Foundation

/// Verity protection of a root/usr data partition, as `systemd-dissect` reports it.
public enum VerityState: String, Sendable, Codable {
    /// A verity partition exists but no root hash is known.
    case no
    /// Root hash known and the hash tree partition paired with it.
    case yes
    /// As `yes`, and a signature of the root hash is available.
    case signed
    /// Root hash known, hash tree in an external file (`--verity-data=` or the `.verity` sidecar).
    case external
}

/// What holds the partitions of an image.
public enum PartitionTableKind: String, Sendable, Codable {
    case gpt, mbr
    /// A bare filesystem (or a directory): no table.
    case none
}

/// One partition chosen for a designator.
public struct DissectedPartition: Sendable, Codable, Equatable {
    public var designator: PartitionDesignator
    /// The kernel's partition number (1-based); nil for a bare filesystem.
    public var number: Int?
    /// GPT unique partition GUID (nil for MBR and bare filesystems).
    public var uuid: UUID?
    public var typeUUID: UUID?
    /// GPT partition name.
    public var label: String?
    /// libblkid TYPE of the content ("ext4", "DM_verity_hash", "crypto_LUKS", ...).
    public var fstype: String?
    public var fsUUID: String?
    public var fsLabel: String?
    public var architecture: Architecture?
    /// Byte offset and size of the partition inside the image.
    public var offset: UInt64
    public var size: UInt64
    public var readOnly: Bool
    public var growFileSystem: Bool
    /// For root/usr: verity protection; nil for other designators.
    public var verity: VerityState?

    /// True when the content is a LUKS container.
    public var isEncrypted: Bool { fstype == "crypto_LUKS" }

    public init(designator: PartitionDesignator, number: Int?, uuid: UUID? = nil, typeUUID: UUID? = nil, label: String? = nil,
                fstype: String?, fsUUID: String? = nil, fsLabel: String? = nil, architecture: Architecture? = nil,
                offset: UInt64, size: UInt64, readOnly: Bool = false, growFileSystem: Bool = false, verity: VerityState? = nil) {
        self.designator = designator
        self.number = number
        self.uuid = uuid
        self.typeUUID = typeUUID
        self.label = label
        self.fstype = fstype
        self.fsUUID = fsUUID
        self.fsLabel = fsLabel
        self.architecture = architecture
        self.offset = offset
        self.size = size
        self.readOnly = readOnly
        self.growFileSystem = growFileSystem
        self.verity = verity
    }
}

/// Facts read from inside the image's filesystems (needs a mount).
public struct ImageMetadata: Sendable, Codable, Equatable {
    /// os-release lines as KEY=VALUE with quoting removed, in file order.
    public var osRelease: [String]?
    /// extension-release lines (for system extension images).
    public var extensionRelease: [String]?
    public var hostname: String?
    public var machineID: String?
    /// One of /usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init exists.
    public var hasInitSystem: Bool

    public init(osRelease: [String]? = nil, extensionRelease: [String]? = nil, hostname: String? = nil,
                machineID: String? = nil, hasInitSystem: Bool = false) {
        self.osRelease = osRelease
        self.extensionRelease = extensionRelease
        self.hostname = hostname
        self.machineID = machineID
        self.hasInitSystem = hasInitSystem
    }

    /// The value of `key` in os-release.
    public func osReleaseValue(_ key: String) -> String? { Self.value(key, in: osRelease) }

    static func value(_ key: String, in lines: [String]?) -> String? {
        guard let lines else { return nil }
        for line in lines.reversed() where line.hasPrefix(key + "=") { return String(line.dropFirst(key.count + 1)) }
        return nil
    }

    /// SYSEXT_SCOPE of the extension-release, defaulting to "system portable" as systemd does.
    public var extensionScopes: [String] {
        guard let extensionRelease else { return [] }
        let scope = Self.value("SYSEXT_SCOPE", in: extensionRelease) ?? "system portable"
        return scope.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
}

/// An image taken apart: its partition table, the partition chosen for each designator, the
/// verity settings that apply, and (after `ImageInspector.readMetadata`) what is inside.
public struct DissectedImage: Sendable {
    public var path: String
    public var size: UInt64
    public var isBlockDevice: Bool
    public var isDirectory: Bool
    public var table: PartitionTableKind
    public var sectorSize: Int
    public var diskUUID: UUID?
    /// Chosen partitions, in systemd-dissect's designator order.
    public var partitions: [DissectedPartition]
    /// Remarks that did not stop the dissection (backup GPT used, ignored partitions, ...).
    public var warnings: [String]
    /// Root hash, signature and hash tree locations that apply to this image.
    public var verity: VeritySettings
    public var metadata: ImageMetadata?
    /// How root and usr ended up protected once an image policy was applied (empty before).
    public var verityTrust: [VerityTrust] = []

    public init(path: String, size: UInt64, isBlockDevice: Bool = false, isDirectory: Bool = false, table: PartitionTableKind,
                sectorSize: Int = 512, diskUUID: UUID? = nil, partitions: [DissectedPartition], warnings: [String] = [],
                verity: VeritySettings = VeritySettings(), metadata: ImageMetadata? = nil) {
        self.path = path
        self.size = size
        self.isBlockDevice = isBlockDevice
        self.isDirectory = isDirectory
        self.table = table
        self.sectorSize = sectorSize
        self.diskUUID = diskUUID
        self.partitions = partitions
        self.warnings = warnings
        self.verity = verity
        self.metadata = metadata
    }

    public func partition(_ designator: PartitionDesignator) -> DissectedPartition? {
        partitions.first { $0.designator == designator }
    }

    /// Image-level architecture: the root's, else the usr's.
    public var architecture: Architecture? {
        partition(.root)?.architecture ?? partition(.usr)?.architecture
    }

    /// systemd-dissect's "Use As" flags.
    public var useBootableUEFI: Bool { partition(.esp) != nil && useBootableContainer }
    public var useBootableContainer: Bool { metadata?.hasInitSystem ?? false }
    public var usePortableService: Bool { metadata?.osReleaseValue("PORTABLE_PREFIXES") != nil }
    public var useSystemExtension: Bool { metadata?.extensionScopes.contains("system") ?? false }
    public var useInitrdExtension: Bool { metadata?.extensionScopes.contains("initrd") ?? false }
    public var usePortableExtension: Bool { metadata?.extensionScopes.contains("portable") ?? false }
}

extension DissectedImage {
    /// A directory tree used as an image: no partitions, metadata read from the tree.
    public static func directory(_ path: String) -> DissectedImage {
        DissectedImage(path: path, size: 0, isBlockDevice: false, isDirectory: true, table: .none, sectorSize: 512,
                       diskUUID: nil, partitions: [], warnings: [], verity: VeritySettings(), metadata: nil)
    }
}
