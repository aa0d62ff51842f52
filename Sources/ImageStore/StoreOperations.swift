import Foundation
import LinuxSystem
import Logging
import ProgressReport

extension ImageStore {
    // MARK: Locks

    /// Locks image `name` for use (a runner booting it, an export reading it): `.shared` for
    /// readers, `.exclusive` for a writable use. Throws `Error.busy` when a conflicting lock is held.
    public func lock(named name: String, kind: FileLock.Kind) throws -> (Image, ImageLock) {
        let image = try find(try ImageName(validating: name).rawValue)
        let lock = try ImageLock.acquire(name: image.name, directory: image.directory, imagePath: image.path, kind: kind)
        return (image, lock)
    }

    /// The image for a change: found on the search path, not a vendor image.
    func writableImage(_ name: String) throws -> Image {
        let image = try find(try ImageName(validating: name).rawValue)
        if image.vendor { throw Error.vendorImage(image.name, path: image.path) }
        return image
    }

    /// Fails when `name` exists anywhere on the search path.
    func requireAbsent(_ name: ImageName) throws {
        if (try? find(name.rawValue)) != nil { throw Error.exists(name.rawValue) }
    }

    // MARK: Clone

    /// Copies image `source` to a new image `destination` in the pool: a btrfs snapshot (recursive)
    /// when the source is a subvolume on the pool's btrfs, else a copy that reflinks each file when
    /// it can and keeps owners, modes, xattrs, ACLs, hard links and holes. Side files are copied
    /// too. Written under a `.#` name and renamed into place when complete.
    /// `progress` is told the bytes copied when the clone is a copy (none for a btrfs snapshot).
    public func clone(_ source: String, to destination: ImageName, readOnly: Bool,
                      progress: ProgressReporter? = nil) async throws -> Image {
        let sourceName = try ImageName(validating: source)
        if sourceName == destination { throw Error.sameName(destination.rawValue) }
        try ensurePool()
        let original = try find(sourceName.rawValue)
        try requireAbsent(destination)
        let sourceLock = try ImageLock.acquire(name: original.name, directory: original.directory, imagePath: original.path, kind: .shared)
        defer { sourceLock.release() }
        let destinationLock = try ImageLock.acquire(name: destination.rawValue, directory: poolPath, imagePath: nil, kind: .exclusive)
        defer { destinationLock.release() }

        let temporary = PendingImage.temporaryPath(pool: poolPath, name: destination.rawValue)
        let pool = poolPath
        let logger = logger
        let final = try await Blocking.run {
            try Self.copyImage(original, to: temporary, pool: pool, name: destination.rawValue, logger: logger, progress: progress)
        }
        let base = "\(poolPath)/\(destination.rawValue)"
        for suffix in SideFiles.suffixes where FileSystem.exists(temporary + suffix) {
            try Rename.rename(temporary + suffix, to: base + suffix)
        }
        guard var image = Inspector.image(directory: poolPath, entry: FileSystem.baseName(final), vendor: false) else {
            throw Error.noSuchImage(destination.rawValue)
        }
        if readOnly {
            try Mutations.setReadOnly(image, true)
            image.readOnly = true
        }
        return image
    }

    /// The copying part of `clone`, run off the cooperative pool: snapshot or copy `original` to
    /// `temporary` with its side files, then rename into place. Returns the final path; on failure
    /// removes everything it wrote.
    static func copyImage(_ original: Image, to temporary: String, pool poolPath: String, name: String, logger: Logger,
                          progress reporter: ProgressReporter? = nil) throws -> String {
        let progress: FileCopy.Progress? = reporter.map { p in { p.add($0) } }
        // An image reached through a symlink (/etc/machines) is copied from its target.
        let source = original.targetPath
        let final: String
        do {
            switch original.type {
            case .subvolume, .directory:
                final = "\(poolPath)/\(name)"
                let poolOnBtrfs = (try? Btrfs.isBtrfs(poolPath)) == true
                if original.type == .subvolume, poolOnBtrfs,
                   (try? Btrfs.filesystemUUID(source)) == (try? Btrfs.filesystemUUID(poolPath)) {
                    try Btrfs.snapshot(source, to: temporary, recursive: true, readOnly: false)
                    logger.info("cloned by btrfs snapshot", metadata: ["source": "\(original.path)"])
                } else {
                    if poolOnBtrfs {
                        try Btrfs.createSubvolume(temporary)
                    }
                    let statistics = try FileCopy.copyTree(source, to: temporary, progress: progress)
                    logger.info("cloned by copy", metadata: ["files": "\(statistics.files)", "reflinked": "\(statistics.reflinked)"])
                }
            case .raw:
                final = "\(poolPath)/\(name).raw"
                reporter?.setTotal(try FileStatus.stat(source).size)
                try FileCopy.copyFile(source, to: temporary, progress: progress)
                // A read-only source has no write bits; the clone starts writable, like the tree.
                let status = try FileStatus.stat(temporary)
                try FileSystem.setPermissions(temporary, mode_t((status.permissions & 0o7777) | 0o200))
            case .block:
                throw Error.unsupported("cannot clone block device image '\(original.name)'; export it with export-raw and import the file")
            }
            // Side files, copied beside the temporary first so that a failure leaves only `.#` names.
            for side in SideFiles.present(for: original) {
                try FileCopy.copyFile(side.path, to: temporary + side.suffix)
            }
            try FileSystem.synchronizeFileSystem(temporary)
            try Mutations.renameNoReplace(temporary, to: final, name: name)
        } catch {
            try? Mutations.removeTree(temporary)
            for suffix in SideFiles.suffixes { try? FileSystem.removeFileIfPresent(temporary + suffix) }
            throw error
        }
        return final
    }

    // MARK: Rename

    /// Renames image `old` to `new` in its directory, with its side files. A read-only directory
    /// (immutable) is made mutable for the rename and immutable again, as machinectl does.
    public func rename(_ old: String, to new: ImageName) throws -> Image {
        let image = try writableImage(old)
        if image.name == new.rawValue { throw Error.sameName(new.rawValue) }
        try requireAbsent(new)
        let oldLock = try ImageLock.acquire(name: image.name, directory: image.directory, imagePath: image.path, kind: .exclusive)
        defer { oldLock.release() }
        let newLock = try ImageLock.acquire(name: new.rawValue, directory: image.directory, imagePath: nil, kind: .exclusive)
        defer { newLock.release() }

        let target = image.directory + "/" + new.rawValue + (image.type == .raw ? ".raw" : "")
        let immutable = image.type == .directory && image.readOnly && (try? InodeFlags.isImmutable(image.path)) == true
        if immutable { try InodeFlags.setImmutable(image.path, false) }
        do {
            try Mutations.renameNoReplace(image.path, to: target, name: new.rawValue)
        } catch {
            if immutable { try? InodeFlags.setImmutable(image.path, true) }
            throw error
        }
        if immutable { try InodeFlags.setImmutable(target, true) }
        let newBase = image.directory + "/" + new.rawValue
        for side in SideFiles.present(for: image) {
            try Mutations.renameNoReplace(side.path, to: newBase + side.suffix, name: new.rawValue)
        }
        guard let renamed = Inspector.image(directory: image.directory, entry: FileSystem.baseName(target), vendor: false) else {
            throw Error.noSuchImage(new.rawValue)
        }
        return renamed
    }

    // MARK: Remove

    /// Removes images with their side files. Every name is looked up before anything is removed
    /// (an unknown name removes nothing); a busy image fails without touching the others.
    public func remove(_ names: [String]) throws -> [Image] {
        let images = try names.map { try writableImage($0) }
        var removed: [Image] = []
        var firstError: Swift.Error?
        for image in images {
            do {
                let lock = try ImageLock.acquire(name: image.name, directory: image.directory, imagePath: image.path, kind: .exclusive)
                defer { lock.release() }
                try Mutations.removeAtomically(image)
                removed.append(image)
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return removed
    }

    // MARK: Read-only

    /// Makes image `name` read-only or writable (per type, see `Mutations.setReadOnly`).
    public func setReadOnly(_ name: String, _ readOnly: Bool) throws -> Image {
        let image = try writableImage(name)
        let lock = try ImageLock.acquire(name: image.name, directory: image.directory, imagePath: image.path, kind: .exclusive)
        defer { lock.release() }
        try Mutations.setReadOnly(image, readOnly)
        var result = image
        result.readOnly = readOnly
        return result
    }

    // MARK: Limit

    /// Sets (or with nil removes) the size limit of image `name`: the referenced-bytes limit of its
    /// btrfs subvolume's qgroup. Quota must already be on (`btrfs quota enable`); imagectl never
    /// turns it on itself.
    public func setLimit(_ name: String, bytes: UInt64?) throws {
        let image = try writableImage(name)
        guard (try? Btrfs.isBtrfs(image.path)) == true else { throw Error.notOnBtrfs(image.name) }
        guard image.type == .subvolume else { throw Error.notASubvolume(image.name) }
        guard try Btrfs.isQuotaEnabled(image.path) else { throw Error.quotaNotEnabled(image.name, path: image.directory) }
        do {
            try Btrfs.setReferencedLimit(image.path, bytes: bytes)
        } catch {
            // ENOTCONN: quota was switched off meanwhile.
            if error.errno == .socketNotConnected { throw Error.quotaNotEnabled(image.name, path: image.directory) }
            throw error
        }
    }

    /// The size limit of image `name`, when it has one.
    func limit(of image: Image) -> UInt64? {
        guard image.type == .subvolume else { return nil }
        return (try? Btrfs.referencedLimit(image.path)) ?? nil
    }

    // MARK: Clean

    /// One thing `clean` removed (or, in a dry run, would remove).
    public struct CleanedEntry: Sendable, Codable, Equatable {
        public enum Kind: String, Sendable, Codable { case temporary, lock, hiddenImage = "hidden-image", ociLayer = "oci-layer" }
        public var path: String
        public var kind: Kind
        /// The image the entry belongs to, when known.
        public var name: String?
    }

    /// Removes `.#` leftovers of interrupted imports and clones (and stale lock files) from the
    /// pool, and cached OCI layers no image uses; with `all`, hidden images too. Anything whose
    /// image lock is held is left alone.
    public func clean(all: Bool, dryRun: Bool) throws -> [CleanedEntry] {
        guard FileSystem.exists(poolPath) else { return [] }
        let entries = try FileSystem.entries(poolPath).sorted()
        // Names whose lock is held now: their `.#` files are in use.
        let heldLocks = Set(entries.compactMap { entry -> String? in
            guard let owner = PendingImage.owner(ofTemporary: entry), owner.isLock,
                  (try? FileLock.isLocked(path: poolPath + "/" + entry)) == true else { return nil }
            return owner.name
        })
        func protected(_ entry: String) -> Bool {
            let body = String(entry.dropFirst(2))
            if let owner = PendingImage.owner(ofTemporary: entry), heldLocks.contains(owner.name) { return true }
            // Other `.#` files (atomic writes of side files, leftovers of other tools) belong to the
            // image whose name they start with.
            return heldLocks.contains { body == $0 || body.hasPrefix($0 + ".") }
        }
        var cleaned: [CleanedEntry] = []
        for entry in entries where entry.hasPrefix(".#") {
            let path = poolPath + "/" + entry
            let owner = PendingImage.owner(ofTemporary: entry)
            if owner?.isLock == true {
                // A lock file is stale when nobody holds it; removing it takes the lock first.
                if heldLocks.contains(owner?.name ?? "") { continue }
                // Gone since the listing: finishing a removal above took and released it.
                if !FileSystem.exists(path) { continue }
                if dryRun {
                    cleaned.append(CleanedEntry(path: path, kind: .lock, name: owner?.name))
                } else if let lock = try FileLock.tryLock(path: path, kind: .exclusive, create: false) {
                    lock.releaseRemovingFile()
                    cleaned.append(CleanedEntry(path: path, kind: .lock, name: owner?.name))
                }
                continue
            }
            if protected(entry) { continue }
            if let owner, owner.isRemoval {
                if PendingImage.isRemovalEntry(entry) {
                    cleaned += try finishRemoval(path, name: owner.name, dryRun: dryRun)
                    continue
                }
                // A side file of a removal: finished with its image entry when that is listed too.
                if let base = SideFiles.suffixes.first(where: { entry.hasSuffix(".rm" + $0) }).map({ String(entry.dropLast($0.count)) }),
                   entries.contains(base) { continue }
            }
            if !dryRun { try Mutations.removeTree(path) }
            cleaned.append(CleanedEntry(path: path, kind: .temporary, name: owner?.name))
        }
        if all {
            for image in Inspector.all(in: poolPath, vendor: false, computeUsage: false) where image.hidden {
                if ImageLock.isLocked(name: image.name, directory: poolPath, imagePath: image.path) { continue }
                if !dryRun {
                    // Take the lock so that nobody starts using it while it goes.
                    guard let lock = try? ImageLock.acquire(name: image.name, directory: poolPath, imagePath: image.path, kind: .exclusive) else { continue }
                    defer { lock.release() }
                    try Mutations.removeAtomically(image)
                }
                cleaned.append(CleanedEntry(path: image.path, kind: .hiddenImage, name: image.name))
            }
        }
        // After the hidden images: the layers only they used go too.
        for path in try OCILayerCache.prune(pool: poolPath, dryRun: dryRun) {
            cleaned.append(CleanedEntry(path: path, kind: .ociLayer, name: nil))
        }
        return cleaned
    }

    /// Finishes a removal that was killed or failed after its image became `.#NAME.<hex>.rm`:
    /// the side files still under NAME (when the process died before moving them) belong to it
    /// as long as no new image NAME exists, and go with it. NAME's lock is held meanwhile, so that
    /// an import of NAME cannot start between the check and the move.
    private func finishRemoval(_ path: String, name: String, dryRun: Bool) throws -> [CleanedEntry] {
        var cleaned: [CleanedEntry] = []
        guard let lock = try? ImageLock.acquire(name: name, directory: poolPath, imagePath: nil, kind: .exclusive) else { return [] }
        defer { lock.release() }
        var sideFiles: [(suffix: String, path: String)] = []
        if Inspector.find(name, in: poolPath, vendor: false, computeUsage: false) == nil {
            sideFiles = SideFiles.present(base: poolPath + "/" + name)
        }
        let moved = SideFiles.suffixes.map { path + $0 }.filter { FileSystem.exists($0) }
        if !dryRun {
            for side in sideFiles where !FileSystem.exists(path + side.suffix) {
                try Rename.rename(side.path, to: path + side.suffix, flags: .noReplace)
            }
            try Mutations.finishRemoval(path)
        }
        cleaned.append(CleanedEntry(path: path, kind: .temporary, name: name))
        for file in moved + sideFiles.map(\.path) { cleaned.append(CleanedEntry(path: file, kind: .temporary, name: name)) }
        return cleaned
    }

    // MARK: Show

    /// Everything `show` prints about image `name`.
    public func details(named name: String) throws -> ImageDetails {
        let image = try image(named: name)
        let holders = ImageLock.holders(name: image.name, directory: image.directory, imagePath: image.path)
        let locked = ImageLock.isLocked(name: image.name, directory: image.directory, imagePath: image.path)
        return ImageDetails(
            image: image,
            sideFiles: SideFiles.present(for: image).map(\.path),
            verity: VerityInfo.discover(for: image),
            locked: locked,
            lockHolders: holders,
            limit: limit(of: image),
            oci: OCIMetadata.read(for: image)
        )
    }
}

/// Everything `show` reports about one image.
public struct ImageDetails: Sendable, Equatable, Encodable {
    public var image: Image
    /// Paths of the side files that exist.
    public var sideFiles: [String]
    public var verity: VerityInfo
    /// Whether any process holds the image's lock.
    public var locked: Bool
    /// Pids holding it (from /proc/locks; -1 when the kernel does not say).
    public var lockHolders: [Int32]
    /// The btrfs qgroup limit on referenced bytes, when one is set.
    public var limit: UInt64?
    /// Where an image pulled from an OCI registry came from, and its run config.
    public var oci: OCIMetadata?

    enum CodingKeys: String, CodingKey { case sideFiles, verity, locked, lockHolders, limit, oci }

    /// The image's own fields at the top level, then the details.
    public func encode(to encoder: Encoder) throws {
        try image.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sideFiles, forKey: .sideFiles)
        try container.encode(verity, forKey: .verity)
        try container.encode(locked, forKey: .locked)
        try container.encode(lockHolders, forKey: .lockHolders)
        try container.encodeIfPresent(limit, forKey: .limit)
        try container.encodeIfPresent(oci, forKey: .oci)
    }
}

/// The verity data found next to an image, in systemd's discovery order (FORMATS.md §2, steps
/// 2-4): xattr first, then the sidecar files. Embedded signature partitions are Dissect's job.
public struct VerityInfo: Sendable, Equatable, Codable {
    public var rootHash: String?
    /// "xattr" (user.verity.roothash) or the sidecar path.
    public var rootHashSource: String?
    public var rootHashSignature: String?
    public var hashTree: String?
    public var usrHash: String?
    public var usrHashSource: String?
    public var usrHashSignature: String?

    /// A root hash is hex, 32 to 64 bytes (sha256 to sha512); anything else is not reported.
    static func validHash(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard (64...128).contains(trimmed.count), trimmed.count % 2 == 0,
              trimmed.allSatisfy({ $0.isHexDigit }) else { return nil }
        return trimmed
    }

    static func discover(for image: Image) -> VerityInfo {
        var info = VerityInfo()
        let base = image.sideFileBase
        func hash(xattr: String, sidecar: String) -> (String, String)? {
            if image.type != .block, let value = try? Xattr.getString(image.targetPath, name: xattr), let hash = validHash(value) {
                return (hash, "xattr \(xattr)")
            }
            // Block devices skip sidecar lookup (FORMATS.md §2).
            if image.type != .block, let text = try? readSmallTextFile(base + sidecar, limit: 4096), let hash = validHash(text) {
                return (hash, base + sidecar)
            }
            return nil
        }
        if let (value, source) = hash(xattr: "user.verity.roothash", sidecar: ".roothash") {
            info.rootHash = value
            info.rootHashSource = source
        }
        if let (value, source) = hash(xattr: "user.verity.usrhash", sidecar: ".usrhash") {
            info.usrHash = value
            info.usrHashSource = source
        }
        if image.type != .block {
            if FileSystem.exists(base + ".roothash.p7s") { info.rootHashSignature = base + ".roothash.p7s" }
            if FileSystem.exists(base + ".usrhash.p7s") { info.usrHashSignature = base + ".usrhash.p7s" }
            if FileSystem.exists(base + ".verity") { info.hashTree = base + ".verity" }
        }
        return info
    }
}
