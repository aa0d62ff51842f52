import Crypto
import Foundation
import ImageStore
import Import
import LinuxSystem

/// `--keep-download`: a pristine, read-only copy of the verified download kept in the pool under a
/// hidden name derived from the URL and the ETag, as systemd-pull does (`.raw-<url>.<etag>.raw`,
/// `.tar-<url>.<etag>`). The requested image is a clone of it; a later pull of the same URL whose
/// ETag still matches (304) clones it again without downloading.
enum KeptDownload {
    /// Longest escaped URL and ETag kept verbatim in the name; longer ones are cut and end in a
    /// hash, so that the name stays within `ImageName.maximumLength`.
    static let urlBudget = 100
    static let etagBudget = 60

    /// One safe path component: letters, digits, `-`, `_` and `.` as they are, every other byte
    /// as `%XX` (so `/`, `%`, quotes and control bytes never reach the file name).
    static func escape(_ text: String, budget: Int) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80, c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." {
                out.append(c)
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        if out.utf8.count <= budget { return out }
        let hash = SHA256.hash(data: Data(text.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return String(out.prefix(budget - 17)) + "~" + hash
    }

    static func prefix(_ payload: Importer.StreamPayload, url: String) -> String {
        (payload == .raw ? ".raw-" : ".tar-") + escape(url, budget: urlBudget)
    }

    /// The kept copy's image name: `.raw-<url>.<etag>` (the file is NAME.raw) or `.tar-<url>.<etag>`;
    /// without an ETag just `.raw-<url>`.
    static func name(_ payload: Importer.StreamPayload, url: String, etag: String?) throws -> ImageName {
        var name = prefix(payload, url: url)
        if let etag { name += "." + escape(etag, budget: etagBudget) }
        // A URL ending in ".raw" (with no ETag after it) or an ETag ending in a side-file suffix
        // would make a name the store refuses, since it would alias another image's files.
        if ImageName.reservedSuffixes.contains(where: { name.hasSuffix($0) }) { name += "~" }
        return try ImageName(validating: name)
    }

    /// A kept copy found in the pool.
    struct Found: Sendable {
        var image: Image
        var etag: String
    }

    /// The newest complete kept copy of `url` in `pool` that has an ETag. The name only narrows the
    /// search: the copy's `user.source_url` must be the URL itself (escaping can collide with a
    /// longer URL whose escaped form starts the same way).
    static func find(_ payload: Importer.StreamPayload, url: String, store: ImageStore) async -> Found? {
        let start = prefix(payload, url: url)
        guard let images = try? await store.list(includeHidden: true) else { return nil }
        let candidates = images.filter { image in
            guard image.hidden, image.name == start || image.name.hasPrefix(start + "."),
                  image.path.hasPrefix(store.poolPath + "/") else { return false }
            switch image.type {
            case .raw: return payload == .raw
            case .directory, .subvolume: return payload == .tar
            case .block: return false
            }
        }
        var found: [Found] = []
        for image in candidates {
            guard (try? Xattr.getString(image.path, name: "user.source_url")) == url,
                  let tag = (try? Xattr.getString(image.path, name: "user.source_etag")) ?? nil else { continue }
            found.append(Found(image: image, etag: tag))
        }
        return found.max { ($0.image.modified ?? .distantPast) < ($1.image.modified ?? .distantPast) }
    }

    /// Moves the verified, converted download staged at `from` (with its staged side files) to
    /// the temporary of `to`, replacing the empty file or directory `beginImage` made there.
    static func move(from: String, to: String) throws {
        try FileSystem.removeTree(to)
        try Rename.rename(from, to: to, flags: .noReplace)
        for suffix in SideFiles.suffixes where FileSystem.exists(from + suffix) {
            try Rename.rename(from + suffix, to: to + suffix)
        }
    }

    /// Makes `temporary` (an empty file or directory from `beginImage`) a writable clone of the
    /// kept copy, with its side files staged beside it (not the metadata file: `commit` writes it):
    /// a btrfs snapshot when the kept copy is a subvolume on the pool's file system, else a copy
    /// that reflinks where the file system can.
    static func fill(_ temporary: String, from kept: Image, pool: String) throws {
        switch kept.type {
        case .raw:
            try FileSystem.removeFileIfPresent(temporary)
            try FileCopy.copyFile(kept.path, to: temporary)
            // The kept copy has no write bits; the clone starts writable like any pulled image.
            let status = try FileStatus.stat(temporary)
            try FileSystem.setPermissions(temporary, mode_t((status.permissions & 0o7777) | 0o200))
        case .subvolume where (try? Btrfs.filesystemUUID(kept.path)) == (try? Btrfs.filesystemUUID(pool)):
            try FileSystem.removeTree(temporary)
            try Btrfs.snapshot(kept.path, to: temporary, recursive: true, readOnly: false)
        case .subvolume, .directory:
            try FileCopy.copyTree(kept.path, to: temporary)
            // The immutable flag of the kept top directory must not follow into the clone.
            if (try? InodeFlags.isImmutable(temporary)) == true { try InodeFlags.setImmutable(temporary, false) }
        case .block:
            throw PullError.keptCopyUnusable(kept.name)
        }
        for side in SideFiles.present(for: kept) where side.suffix != SideFiles.metadataSuffix {
            try FileSystem.removeFileIfPresent(temporary + side.suffix)
            try FileCopy.copyFile(side.path, to: temporary + side.suffix)
        }
    }
}
