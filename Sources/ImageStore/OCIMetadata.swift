import Foundation
import LinuxSystem

/// What an image pulled from an OCI registry keeps beside it (`NAME.oci.json`): where it came
/// from, the layers it was made of (so that `clean` knows which cached layers are in use), and
/// the parts of the image config that say how to run it. Written by Pull, read by `show`,
/// `run -M` and `push-oci`.
public struct OCIMetadata: Codable, Sendable, Equatable {
    /// The side file suffix (one of `SideFiles.suffixes`).
    public static let suffix = ".oci.json"

    /// The run settings of the image config (OCI image-spec config.md, `config` object).
    public struct RunConfig: Codable, Sendable, Equatable {
        public var entrypoint: [String]?
        public var cmd: [String]?
        public var env: [String]?
        public var workingDir: String?
        public var user: String?
        public var exposedPorts: [String]?
        public var labels: [String: String]?

        public init(entrypoint: [String]? = nil, cmd: [String]? = nil, env: [String]? = nil, workingDir: String? = nil,
                    user: String? = nil, exposedPorts: [String]? = nil, labels: [String: String]? = nil) {
            self.entrypoint = entrypoint
            self.cmd = cmd
            self.env = env
            self.workingDir = workingDir
            self.user = user
            self.exposedPorts = exposedPorts
            self.labels = labels
        }

        enum CodingKeys: String, CodingKey {
            case entrypoint = "Entrypoint", cmd = "Cmd", env = "Env", workingDir = "WorkingDir", user = "User"
            case exposedPorts = "ExposedPorts", labels = "Labels"
        }
    }

    /// The reference as given (e.g. `docker.io/library/debian:latest`).
    public var reference: String
    /// `sha256:...` of the manifest the image was made from.
    public var manifestDigest: String
    /// `sha256:...` of the image config blob.
    public var configDigest: String
    /// `os/architecture[/variant]` of the image.
    public var platform: String?
    /// The layer blobs applied, bottom first (`sha256:...`).
    public var layers: [String]
    public var config: RunConfig

    public init(reference: String, manifestDigest: String, configDigest: String, platform: String?, layers: [String],
                config: RunConfig) {
        self.reference = reference
        self.manifestDigest = manifestDigest
        self.configDigest = configDigest
        self.platform = platform
        self.layers = layers
        self.config = config
    }

    /// The metadata of `image`, when it has any (and it parses).
    public static func read(for image: Image) -> OCIMetadata? {
        read(path: image.sideFileBase + suffix)
    }

    static func read(path: String) -> OCIMetadata? {
        guard let bytes = try? FileSystem.readFile(path, limit: 4 << 20) else { return nil }
        return try? JSONDecoder().decode(OCIMetadata.self, from: Data(bytes))
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [0x0a]
    }
}

/// The cache of OCI layer blobs, by digest, in a hidden directory of the pool
/// (`.oci-layers/sha256-<hex>`), shared by every image pulled into the pool. Pulls hold a shared
/// lock on `.oci-layers/.lock` while they use it; `clean` prunes only with the exclusive lock.
public enum OCILayerCache {
    /// The directory's name in the pool. `Inspector` does not take it for an image.
    public static let directoryName = ".oci-layers"

    public static func directory(pool: String) -> String { pool + "/" + directoryName }

    /// The file name of a blob (`sha256:HEX` -> `sha256-HEX`); nil for anything but a sha256 digest.
    public static func fileName(digest: String) -> String? {
        guard digest.hasPrefix("sha256:") else { return nil }
        let hex = digest.dropFirst(7)
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        return "sha256-" + hex
    }

    /// Creates the directory when missing and takes the lock (shared for a pull, exclusive for a
    /// prune). nil when the exclusive lock is busy.
    public static func lock(pool: String, exclusive: Bool) throws -> FileLock? {
        let dir = directory(pool: pool)
        // A concurrent pull may create it at the same time: its existence is what counts.
        if !FileSystem.exists(dir) { try? FileSystem.makeDirectory(dir, mode: 0o700) }
        if exclusive { return try FileLock.tryLock(path: dir + "/.lock", kind: .exclusive) }
        // A prune holds the exclusive lock only briefly: wait for it.
        for _ in 0..<600 {
            if let lock = try FileLock.tryLock(path: dir + "/.lock", kind: .shared) { return lock }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw SystemCallError("fcntl(F_OFD_SETLK)", errno: .resourceBusy, path: dir + "/.lock")
    }

    /// Removes the cached blobs (and interrupted downloads) that no image in `pool` lists, unless
    /// a pull is using the cache. Returns the paths removed (or that would be).
    static func prune(pool: String, dryRun: Bool) throws -> [String] {
        let dir = directory(pool: pool)
        guard FileSystem.exists(dir) else { return [] }
        guard let lock = try lock(pool: pool, exclusive: true) else { return [] }
        defer { lock.close() }
        var used = Set<String>()
        for entry in try FileSystem.entries(pool) where entry.hasSuffix(OCIMetadata.suffix) && !entry.hasPrefix(".#") {
            for digest in OCIMetadata.read(path: pool + "/" + entry)?.layers ?? [] {
                if let name = fileName(digest: digest) { used.insert(name) }
            }
        }
        var removed: [String] = []
        for entry in try FileSystem.entries(dir).sorted() where entry != ".lock" && !used.contains(entry) {
            let path = dir + "/" + entry
            if !dryRun { try FileSystem.removeTree(path) }
            removed.append(path)
        }
        return removed
    }
}
