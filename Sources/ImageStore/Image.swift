import Foundation
import LinuxSystem

/// How an image is stored (FORMATS.md §3).
public enum ImageType: String, Codable, Sendable, CaseIterable {
    /// A plain directory tree `NAME/`.
    case directory
    /// A btrfs subvolume `NAME/`.
    case subvolume
    /// A disk image file `NAME.raw`.
    case raw
    /// A symlink `NAME` to a block device (or a block device node).
    case block
}

/// Where an image came from; stored with the image and shown by `show`.
public struct Provenance: Codable, Sendable, Equatable {
    /// Absolute file path, "-" for stdin, or URL.
    public var source: String
    /// Hex SHA-256 of the bytes as read (before decompression).
    public var sha256: String?
    /// e.g. "raw+xz", "qcow2", "tar+zstd", "directory", "clone".
    public var format: String?
    public var importedAt: Date

    public init(source: String, sha256: String?, format: String?, importedAt: Date = Date()) {
        self.source = source
        self.sha256 = sha256
        self.format = format
        self.importedAt = importedAt
    }
}

/// One image found in the store.
public struct Image: Sendable, Codable, Equatable {
    /// The image name (file name without `.raw`).
    public var name: String
    public var type: ImageType
    /// The path of the image: the directory, the `.raw` file, or the block device symlink.
    public var path: String
    public var readOnly: Bool
    /// Hidden images (leading `.`) are listed only with `--all`.
    public var hidden: Bool
    /// True for images in the read-only vendor directories (/usr/lib/machines,
    /// /usr/local/lib/machines): they can be cloned but not changed.
    public var vendor: Bool
    /// Bytes allocated on disk (du-style; hard links once), the device size for block devices.
    public var usage: UInt64?
    public var created: Date?
    public var modified: Date?
    public var provenance: Provenance?

    /// The path without `.raw`, to which side-file suffixes are appended (`NAME.roothash`, ...).
    public var sideFileBase: String {
        type == .raw && path.hasSuffix(".raw") ? String(path.dropLast(4)) : path
    }

    /// The image's own file or directory: `path` with symlinks resolved (an /etc/machines entry is
    /// a symlink to the real tree). Reads and flag changes go there; rename and remove act on
    /// `path` itself.
    public var targetPath: String {
        (try? FileSystem.canonicalPath(path)) ?? path
    }

    /// The directory holding the image.
    public var directory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
