import Foundation
import LinuxSystem
import Synchronization

/// An image being created: a `.#` temporary in the pool and the image's lock. Either `commit`
/// renames it into place or `discard` removes it; a process killed in between leaves only `.#`
/// names, which `clean` removes once the lock is gone.
public final class PendingImage: Sendable {
    public enum Kind: Sendable { case rawFile, directoryTree }

    /// Inside the pool, name starting ".#". rawFile: an empty regular file (0644) already created.
    /// directoryTree: an empty directory (0755), a btrfs subvolume when the pool is on btrfs.
    public let temporaryPath: String
    public let name: ImageName
    public let kind: Kind
    let pool: String
    let force: Bool
    let lock: ImageLock

    private enum State { case open, committed, discarded }
    private let state = Mutex(State.open)

    init(name: ImageName, kind: Kind, temporaryPath: String, pool: String, force: Bool, lock: ImageLock) {
        self.name = name
        self.kind = kind
        self.temporaryPath = temporaryPath
        self.pool = pool
        self.force = force
        self.lock = lock
    }

    deinit {
        discard()
    }

    /// `.#NAME.<16 hex>.tmp`: the marker lets `clean` find the image name (whose lock decides
    /// whether the temporary is still in use) even when NAME itself contains dots.
    static func temporaryPath(pool: String, name: String) -> String {
        "\(pool)/.#\(name).\(FileSystem.randomHex(8)).tmp"
    }

    /// The image name a `.#` entry of the pool belongs to: `.#NAME.<hex>.tmp[SUFFIX]` (temporaries
    /// and their staged side files), `.#NAME.<hex>.rm[SUFFIX]` (an image being removed, see
    /// `Mutations.removeAtomically`) or `.#NAME.lck` (locks); nil for anything else.
    static func owner(ofTemporary entry: String) -> (name: String, isLock: Bool, isRemoval: Bool)? {
        guard entry.hasPrefix(".#") else { return nil }
        let body = entry.dropFirst(2)
        if let match = body.firstMatch(of: /^(.+)\.[0-9a-f]{16}\.(tmp|rm)(\..*)?$/) {
            return (String(match.1), false, match.2 == "rm")
        }
        if body.hasSuffix(".lck") && body.count > 4 { return (String(body.dropLast(4)), true, false) }
        return nil
    }

    /// Whether `entry` is the image entry of a removal (`.#NAME.<hex>.rm`), not one of its side
    /// files.
    static func isRemovalEntry(_ entry: String) -> Bool {
        entry.wholeMatch(of: /\.#.+\.[0-9a-f]{16}\.rm/) != nil
    }

    /// The final path of the image once committed.
    public var finalPath: String {
        kind == .rawFile ? "\(pool)/\(name.rawValue).raw" : "\(pool)/\(name.rawValue)"
    }

    /// Stages a side file (suffix from `SideFiles.suffixes`, e.g. ".roothash") that `commit` moves
    /// into place beside the image. Written now as `<temporaryPath><suffix>`.
    public func addSideFile(suffix: String, contents: [UInt8]) throws {
        guard SideFiles.suffixes.contains(suffix), suffix != SideFiles.metadataSuffix else {
            throw ImageStore.Error.unsupported("'\(suffix)' is not a side file suffix")
        }
        try FileSystem.writeFileAtomically(temporaryPath + suffix, bytes: contents, mode: 0o644)
    }

    /// fsyncs, renames into place atomically (RENAME_NOREPLACE; with force it replaces the old image
    /// and its side files), stores provenance, applies read-only, releases the lock.
    public func commit(readOnly: Bool, provenance: Provenance) throws -> Image {
        let current = state.withLock { $0 }
        guard current == .open else { throw ImageStore.Error.alreadyFinished(name.rawValue) }

        switch kind {
        case .rawFile: try FileSystem.synchronize(temporaryPath)
        case .directoryTree: try FileSystem.synchronizeFileSystem(temporaryPath)
        }

        let target = finalPath
        let existing = Inspector.find(name.rawValue, in: pool, vendor: false, computeUsage: false)
        if existing != nil && !force {
            throw ImageStore.Error.exists(name.rawValue)
        }
        if let existing {
            // Replace: make the old image writable (an immutable directory cannot be renamed), swap
            // atomically when it has the same file name, else put the new one in place first; then
            // remove the old image and its side files.
            // Only the pool's own trees: a symlinked image's target and a block device keep their
            // flags (only the link is replaced).
            let ownTree = (existing.type == .directory || existing.type == .subvolume) && existing.path == existing.targetPath
            if ownTree { try Mutations.setReadOnly(existing, false) }
            if existing.path == target {
                try Rename.rename(temporaryPath, to: target, flags: .exchange)
                try Mutations.removeTree(temporaryPath)
            } else {
                try Rename.rename(temporaryPath, to: target, flags: .noReplace)
                try Mutations.removeTree(existing.path)
            }
            for side in SideFiles.present(for: existing) {
                try FileSystem.removeFileIfPresent(side.path)
            }
        } else {
            try Mutations.renameNoReplace(temporaryPath, to: target, name: name.rawValue)
        }
        state.withLock { $0 = .committed }

        // Staged side files follow the image.
        let base = "\(pool)/\(name.rawValue)"
        for suffix in SideFiles.suffixes where FileSystem.exists(temporaryPath + suffix) {
            try Rename.rename(temporaryPath + suffix, to: base + suffix)
        }
        try Metadata(provenance: provenance).write(base: base)
        Mutations.recordSource(provenance.source, on: target)
        try FileSystem.synchronize(pool)

        guard var image = Inspector.image(directory: pool, entry: FileSystem.baseName(target), vendor: false) else {
            throw ImageStore.Error.noSuchImage(name.rawValue)
        }
        if readOnly {
            try Mutations.setReadOnly(image, true)
            image.readOnly = true
        }
        lock.release()
        return image
    }

    /// Removes the temporary and releases the lock. Idempotent; a no-op after commit.
    public func discard() {
        let previous = state.withLock { value in
            defer { if value == .open { value = .discarded } }
            return value
        }
        guard previous == .open else { return }
        try? Mutations.removeTree(temporaryPath)
        for suffix in SideFiles.suffixes {
            try? FileSystem.removeFileIfPresent(temporaryPath + suffix)
        }
        lock.release()
    }
}
