import Foundation
import LinuxSystem
import Logging

/// The image store: a writable pool directory plus the read-only places of the search path.
///
/// An actor, so that store changes from one process are serialised; changes that take several steps
/// also hold the image's cross-process lock (`ImageLock`), so two imagectl processes cannot corrupt
/// the pool.
public actor ImageStore {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case noSuchImage(String)
        case exists(String)
        case busy(String)
        case vendorImage(String, path: String)
        case notADirectory(String)
        case readOnlyPool(String)
        case notOnBtrfs(String)
        case notASubvolume(String)
        case quotaNotEnabled(String, path: String)
        case alreadyFinished(String)
        case sameName(String)
        case unsupported(String)
        case partlyRemoved(String, detail: String)
        /// A directory of the search path this process may not read (a 0700 pool, not root).
        case permissionDenied(String)

        public var description: String {
            switch self {
            case .noSuchImage(let name): "no image named '\(name)'"
            case .exists(let name): "image '\(name)' already exists"
            case .busy(let name): "image '\(name)' is busy (locked by another process)"
            case .vendorImage(let name, let path): "image '\(name)' is a read-only vendor image (\(path)); clone it to change it"
            case .notADirectory(let path): "image pool '\(path)' is not a directory"
            case .readOnlyPool(let path): "image pool '\(path)' is read-only"
            case .notOnBtrfs(let name): "image '\(name)' is not on btrfs: limits need btrfs qgroups"
            case .notASubvolume(let name): "image '\(name)' is not a btrfs subvolume: limits apply to subvolumes only"
            case .quotaNotEnabled(let name, let path): "btrfs quota is not enabled for image '\(name)'; enable it with 'btrfs quota enable \(path)' (imagectl never turns quota on by itself)"
            case .alreadyFinished(let name): "pending image '\(name)' was already committed or discarded"
            case .sameName(let name): "source and destination are both '\(name)'"
            case .unsupported(let text): text
            case .partlyRemoved(let name, let detail): "image '\(name)' is removed, but deleting its files failed (\(detail)); 'imagectl clean' retries"
            case .permissionDenied(let path): "permission denied: cannot read the image pool '\(path)'\(geteuid() == 0 ? "" : " (not running as root)")"
            }
        }

        /// True for `busy`: the CLI exits 16.
        public var isBusy: Bool {
            if case .busy = self { return true }
            return false
        }
    }

    /// One directory of the search path.
    public struct SearchDirectory: Sendable, Equatable {
        public var path: String
        /// Vendor directories hold read-only images (they can be cloned, not changed).
        public var vendor: Bool
        public init(path: String, vendor: Bool) {
            self.path = path
            self.vendor = vendor
        }
    }

    /// The system search path for machine images, first match wins (FORMATS.md §3).
    public static let systemSearchPath: [SearchDirectory] = [
        SearchDirectory(path: "/etc/machines", vendor: false),
        SearchDirectory(path: "/run/machines", vendor: false),
        SearchDirectory(path: "/var/lib/machines", vendor: false),
        SearchDirectory(path: "/var/lib/container", vendor: false),
        SearchDirectory(path: "/usr/local/lib/machines", vendor: true),
        SearchDirectory(path: "/usr/lib/machines", vendor: true),
    ]

    /// The writable pool when no root is given.
    public static let defaultPool = "/var/lib/machines"

    /// The writable pool, where new images go.
    public nonisolated let poolPath: String
    /// Where images are looked up, in order (the pool is part of it).
    public nonisolated let searchPath: [SearchDirectory]
    let logger = Logger(label: "imagectl.store")

    /// nil root: the system search path of FORMATS.md §3 with /var/lib/machines as the writable
    /// pool. An explicit root: that directory only (created mode 0700 if missing).
    public init(root: String?) throws {
        if let root {
            try self.init(pool: root, searchPath: [SearchDirectory(path: root, vendor: false)], createPool: true)
        } else {
            try self.init(pool: Self.defaultPool, searchPath: Self.systemSearchPath, createPool: false)
        }
    }

    /// A store over an explicit search path (tests; other layouts). `pool` must be one of the
    /// non-vendor directories of `searchPath` or is searched first.
    public init(pool: String, searchPath: [SearchDirectory], createPool: Bool) throws {
        let pool = Self.normalize(pool)
        poolPath = pool
        var path = searchPath.map { SearchDirectory(path: Self.normalize($0.path), vendor: $0.vendor) }
        if !path.contains(where: { $0.path == pool }) { path.insert(SearchDirectory(path: pool, vendor: false), at: 0) }
        self.searchPath = path
        if createPool { try Self.createPool(pool) }
    }

    /// Absolute path without trailing slashes.
    static func normalize(_ path: String) -> String {
        var result = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
        return result
    }

    /// Creates the pool (and parents) when missing: mode 0700, a btrfs subvolume when the parent is
    /// on btrfs (as systemd makes /var/lib/machines), so that snapshots of images stay cheap.
    static func createPool(_ pool: String) throws {
        if let status = try FileStatus.lstatIfPresent(pool) {
            let resolved = status.kind == .symbolicLink ? try FileStatus.stat(pool) : status
            guard resolved.kind == .directory else { throw Error.notADirectory(pool) }
            return
        }
        let parent = FileSystem.parentDirectory(pool)
        try FileSystem.makeDirectories(parent)
        if (try? Btrfs.isBtrfs(parent)) == true, (try? Btrfs.createSubvolume(pool)) != nil {
            try FileSystem.setPermissions(pool, 0o700)
        } else {
            do {
                try FileSystem.makeDirectory(pool, mode: 0o700)
            } catch where error.errno == .fileExists {
                // Created by a concurrent process meanwhile.
            }
        }
    }

    /// The pool, created on first write when it is the system default.
    func ensurePool() throws {
        try Self.createPool(poolPath)
    }

    // MARK: Lookup

    /// Looks `named` up through the search path (first match wins).
    public func image(named: String) throws -> Image {
        let name = try ImageName(validating: named)
        return try find(name.rawValue, computeUsage: true)
    }

    /// The image called `name` on this store's search path (ImageLookup's order).
    func find(_ name: String, computeUsage: Bool = false) throws -> Image {
        do {
            return try ImageLookup.find(name, in: searchPath, computeUsage: computeUsage)
        } catch is ImageName.Error {
            throw Error.noSuchImage(name)
        }
    }

    /// Every image on the search path (a name shadowed by an earlier directory is listed once),
    /// sorted by name; hidden images only with `includeHidden`.
    public func list(includeHidden: Bool) throws -> [Image] {
        try Self.list(searchPath, includeHidden: includeHidden)
    }

    /// `list` without the actor, for callers that cannot wait (a shell completion request) and
    /// change nothing.
    public static func list(_ searchPath: [SearchDirectory], includeHidden: Bool) throws -> [Image] {
        var seen = Set<String>()
        var result: [Image] = []
        for directory in searchPath {
            try Inspector.requireReadable(directory.path)
            for image in Inspector.all(in: directory.path, vendor: directory.vendor) {
                guard seen.insert(image.name).inserted else { continue }
                if image.hidden && !includeHidden { continue }
                result.append(image)
            }
        }
        return result.sorted { $0.name < $1.name }
    }

    // MARK: Creating images

    /// Starts creating image `name` in the pool under a `.#` temporary name and takes the image's
    /// lock. Throws if `name` exists anywhere on the search path (unless `force`, which replaces an
    /// image in the pool but cannot replace a vendor image) or is locked (busy).
    public func beginImage(_ name: ImageName, kind: PendingImage.Kind, force: Bool) throws -> PendingImage {
        try ensurePool()
        if let existing = try? find(name.rawValue) {
            if !force { throw Error.exists(name.rawValue) }
            if existing.vendor { throw Error.vendorImage(name.rawValue, path: existing.path) }
        }
        let lock = try ImageLock.acquire(name: name.rawValue, directory: poolPath, imagePath: nil, kind: .exclusive)
        if force, let existing = Inspector.find(name.rawValue, in: poolPath, vendor: false, computeUsage: false) {
            // Someone running the old image holds its global lock.
            if ImageLock.isGloballyLocked(imagePath: existing.path) {
                lock.release()
                throw Error.busy(name.rawValue)
            }
        }
        let temporary = PendingImage.temporaryPath(pool: poolPath, name: name.rawValue)
        do {
            switch kind {
            case .rawFile:
                try FileSystem.createFile(temporary, mode: 0o644)
            case .directoryTree:
                if (try? Btrfs.isBtrfs(poolPath)) == true {
                    try Btrfs.createSubvolume(temporary)
                    try FileSystem.setPermissions(temporary, 0o755)
                } else {
                    try FileSystem.makeDirectory(temporary, mode: 0o755)
                }
            }
        } catch {
            lock.release()
            throw error
        }
        logger.debug("begin image", metadata: ["name": "\(name)", "temporary": "\(temporary)"])
        return PendingImage(name: name, kind: kind, temporaryPath: temporary, pool: poolPath, force: force, lock: lock)
    }
}
