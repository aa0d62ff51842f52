import Foundation
import LinuxSystem

/// Turns directory entries of a pool into `Image` values (FORMATS.md §3): `NAME` is a directory,
/// a btrfs subvolume, or a symlink to a block device (or a directory / raw file, as /etc/machines
/// holds); `NAME.raw` is a disk image. Everything else (side files, `.#` temporaries and locks) is
/// not an image.
enum Inspector {
    /// The image whose file in `directory` is `entry`, or nil when the entry is not an image.
    static func image(directory: String, entry: String, vendor: Bool, computeUsage: Bool = true) -> Image? {
        if entry.hasPrefix(".#") || entry == OCILayerCache.directoryName { return nil }
        let path = directory == "/" ? "/" + entry : directory + "/" + entry
        guard let status = try? FileStatus.lstat(path) else { return nil }
        var name = entry
        let type: ImageType
        var target = status
        if status.kind == .symbolicLink {
            guard let resolved = try? FileStatus.stat(path) else { return nil }
            target = resolved
        }
        switch target.kind {
        case .directory:
            type = (target.inode == 256 && (try? Btrfs.isSubvolume(path)) == true) ? .subvolume : .directory
        case .regular:
            guard entry.hasSuffix(".raw"), entry.count > 4 else { return nil }
            name = String(entry.dropLast(4))
            type = .raw
        case .blockDevice:
            type = .block
        default:
            return nil
        }
        guard (try? ImageName(validating: name)) != nil else { return nil }

        var image = Image(name: name, type: type, path: path, readOnly: false, hidden: name.hasPrefix("."),
                          vendor: vendor, usage: nil, created: nil, modified: nil, provenance: nil)
        image.readOnly = vendor || isReadOnly(image, status: target)
        image.modified = Date(timeIntervalSince1970: target.modificationTime.timeIntervalSince1970)
        image.created = creationDate(image)
        if computeUsage { image.usage = usage(image, status: target) }
        image.provenance = Metadata.read(image)?.provenance
        return image
    }

    /// The image called `name` in `directory`: `NAME` first, then `NAME.raw` (systemd's order).
    static func find(_ name: String, in directory: String, vendor: Bool, computeUsage: Bool = true) -> Image? {
        if let image = image(directory: directory, entry: name, vendor: vendor, computeUsage: computeUsage) { return image }
        return image(directory: directory, entry: name + ".raw", vendor: vendor, computeUsage: computeUsage)
    }

    /// Throws `permissionDenied` when `directory` (or `entry` in it) exists but this process may
    /// not look at it: `all` and `find` treat an unreadable entry as no image, which would turn
    /// a 0700 pool into an empty one for a user who is not root. Missing is fine.
    static func requireReadable(_ directory: String, entry: String? = nil) throws {
        do {
            if let entry {
                _ = try FileStatus.lstatIfPresent(directory == "/" ? "/" + entry : directory + "/" + entry)
            } else if try FileStatus.lstatIfPresent(directory) != nil {
                _ = try FileSystem.entries(directory)
            }
        } catch {
            if error.errno == .permissionDenied || error.errno == .notPermitted {
                throw ImageStore.Error.permissionDenied(directory)
            }
            if error.errno == .notDirectory { return }
            throw error
        }
    }

    /// Every image in `directory` (none when it does not exist).
    static func all(in directory: String, vendor: Bool, computeUsage: Bool = true) -> [Image] {
        guard let entries = try? FileSystem.entries(directory) else { return [] }
        return entries.sorted().compactMap { image(directory: directory, entry: $0, vendor: vendor, computeUsage: computeUsage) }
    }

    /// Read-only as FORMATS.md §3 defines it per type, or a read-only mount.
    static func isReadOnly(_ image: Image, status: FileStatus) -> Bool {
        let path = image.targetPath
        if FileSystem.isOnReadOnlyMount(path) { return true }
        switch image.type {
        case .subvolume: return (try? Btrfs.isReadOnly(path)) ?? false
        case .directory: return (try? InodeFlags.isImmutable(path)) ?? false
        case .raw: return status.permissions & 0o222 == 0
        case .block: return (try? FileSystem.isBlockDeviceReadOnly(path)) ?? false
        }
    }

    /// Birth time: the subvolume's otime, else statx's btime of the image file.
    static func creationDate(_ image: Image) -> Date? {
        let path = image.targetPath
        if image.type == .subvolume, let time = try? Btrfs.creationTime(path) {
            return Date(timeIntervalSince1970: Double(time.seconds) + Double(time.nanoseconds) / 1e9)
        }
        guard let time = try? FileStatus.birthTime(path) else { return nil }
        return Date(timeIntervalSince1970: time.timeIntervalSince1970)
    }

    /// Allocated bytes (du), or the device size for a block device.
    static func usage(_ image: Image, status: FileStatus) -> UInt64? {
        switch image.type {
        case .raw: return status.allocatedBytes
        case .directory, .subvolume: return FileSystem.diskUsage(image.targetPath)
        case .block: return try? FileSystem.blockDeviceSize(image.targetPath)
        }
    }
}
