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


    /// `.#NAME.<16 hex>.rm`: where `removeAtomically` moves an image before deleting it. The
    /// `.rm` marker tells `clean` that the removal was decided (the image is gone by name) and
    /// only its deletion may be unfinished.
    static func removalPath(directory: String, name: String) -> String {
        "\(directory)/.#\(name).\(FileSystem.randomHex(8)).rm"
    }

    /// Removes `image` so that a crash at any point leaves it either whole under its name or gone:
    /// renameat2(2) of the image to a `.rm` name beside it first (one atomic step), then its side
    /// files after it, then the deletion. A process killed, or a deletion that fails (an immutable
    /// file deep in the tree), leaves only `.#` names, which `clean` finishes.
    static func removeAtomically(_ image: Image) throws {
        let doomed = removalPath(directory: image.directory, name: image.name)
        // The store sets the immutable flag on the top of a read-only directory; rename(2) refuses
        // an immutable inode. Only the pool's own tree: a symlinked image keeps its target's flags.
        let immutable = image.type == .directory && image.path == image.targetPath
            && (try? InodeFlags.isImmutable(image.path)) == true
        if immutable { try InodeFlags.setImmutable(image.path, false) }
        do {
            try Rename.rename(image.path, to: doomed, flags: .noReplace)
        } catch {
            if immutable { try? InodeFlags.setImmutable(image.path, true) }
            throw error
        }
        do {
            // The image is gone by name from here on; what follows only frees space.
            for side in SideFiles.present(for: image) {
                try Rename.rename(side.path, to: doomed + side.suffix, flags: .noReplace)
            }
            try finishRemoval(doomed)
        } catch {
            throw ImageStore.Error.partlyRemoved(image.name, detail: "\(error)")
        }
    }

    /// Deletes a `.rm` entry made by `removeAtomically` and the side files moved after it. The
    /// entry is removed itself, never followed: a block image is a symlink to the device.
    static func finishRemoval(_ doomed: String) throws {
        try removeTree(doomed)
        for suffix in SideFiles.suffixes {
            try FileSystem.removeFileIfPresent(doomed + suffix)
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
