import Foundation
import LinuxSystem

/// Changes to one image on disk, shared by the store's verbs and by `PendingImage`.
enum Mutations {
    /// Makes `image` read-only or writable, per type (FORMATS.md §3): the btrfs subvolume flag (on
    /// nested subvolumes too),
    /// `chattr +i` on a directory, the write bits of a raw file (as machinectl: `mode & 0444`, plus
    /// 0200 when writable), BLKROSET on a block device.
    static func setReadOnly(_ image: Image, _ readOnly: Bool) throws {
        let path = image.targetPath
        switch image.type {
        case .subvolume:
            // Subvolumes nested in the image are separate trees with their own flag: set them too,
            // children first when freezing (so the tree is never writable below a read-only top
            // midway), the top first when thawing.
            let nested = try Btrfs.subvolumes(beneath: path, postOrder: readOnly)
            let order = readOnly ? nested + [path] : [path] + nested
            for path in order where try Btrfs.isReadOnly(path) != readOnly {
                try Btrfs.setReadOnly(path, readOnly)
            }
        case .directory:
            try InodeFlags.setImmutable(path, readOnly)
        case .raw:
            let status = try FileStatus.stat(path)
            let mode = (status.permissions & 0o444) | (readOnly ? 0 : 0o200)
            if mode != status.permissions & 0o777 { try FileSystem.setPermissions(path, mode_t(mode)) }
        case .block:
            try FileSystem.setBlockDeviceReadOnly(path, readOnly)
        }
    }

    /// Removes a tree or file: subvolumes as subvolumes, the immutable flag on the top cleared first
    /// (the store sets it there for read-only directories; one set deeper by hand stays an error).
    static func removeTree(_ path: String) throws {
        guard let status = try FileStatus.lstatIfPresent(path) else { return }
        if status.kind == .directory, (try? InodeFlags.isImmutable(path)) == true {
            try InodeFlags.setImmutable(path, false)
        }
        try FileSystem.removeTree(path)
    }

    /// Removes an image: a block-device symlink is only unlinked (never the device).
    static func removeImage(_ image: Image) throws {
        if image.type == .block {
            try FileSystem.removeFile(image.path)
        } else {
            try removeTree(image.path)
        }
    }

    /// renameat2(2) RENAME_NOREPLACE, reporting an existing target as `ImageStore.Error.exists`.
    static func renameNoReplace(_ from: String, to: String, name: String) throws {
        do {
            try Rename.rename(from, to: to, flags: .noReplace)
        } catch {
            if error.errno == .fileExists { throw ImageStore.Error.exists(name) }
            throw error
        }
    }

    /// `user.source_url` as systemd-pull sets it: for downloads only (systemd-import does not tag
    /// local imports, and on ext4 the extra xattr can cost the image a block the peer does not
    /// use). Best effort: not every filesystem takes user xattrs (tmpfs before 6.6). Local
    /// sources are recorded in the metadata file alone.
    static func recordSource(_ source: String, on path: String) {
        guard source.contains("://") else { return }
        try? Xattr.set(path, name: "user.source_url", string: source)
    }
}
