import Crypto
import Foundation
import ImageStore
import Import
import LinuxSystem
import Logging
import ProgressReport

/// Options of `pull-oci`.
public struct OCIPullOptions: Sendable {
    /// `os/architecture[/variant]` chosen from an image index.
    public var platform: String
    public var force: Bool
    public var readOnly: Bool
    /// Cap on each layer blob and on what it decompresses to.
    public var maximumSize: UInt64
    public var backoff: [Double]

    /// Manifests, indexes and configs are small JSON documents: anything bigger is refused.
    public static let documentLimit: UInt64 = 4 << 20

    public init(platform: String = "linux/amd64", force: Bool = false, readOnly: Bool = false,
                maximumSize: UInt64 = ImportOptions.defaultMaximumSize, backoff: [Double] = [0.5, 1, 2]) {
        self.platform = platform
        self.force = force
        self.readOnly = readOnly
        self.maximumSize = maximumSize
        self.backoff = backoff
    }
}

/// `pull-oci`: an image from an OCI registry becomes one directory tree in the pool (issue 19).
///
/// The order: manifest (an index resolved to the platform) -> config -> layers, each downloaded
/// (in parallel, into the pool's layer cache, unless already there) and checked against its
/// digest as it streams -> applied bottom first into a `.#` temporary with LayerImport (import-
/// tar's entry checks, OCI whiteouts) -> the config's run settings staged as `NAME.oci.json` ->
/// commit. Any failure discards the temporary: no image appears under NAME unless complete.
public enum OCIPuller {
    static let logger = Logger(label: "imagectl.pull-oci")

    /// What the registry said the image is, once resolved to one manifest.
    struct Resolved {
        var manifest: OCIManifest
        var digest: String
        var platform: String?
    }

    public static func pull(_ reference: OCIReference, as name: ImageName, into store: ImageStore, options: OCIPullOptions,
                            job: ImportJob, progress: ProgressReporter) async throws -> Image {
        if !options.force, (try? await store.image(named: name.rawValue)) != nil { throw PullError.exists(name.rawValue) }
        let client = RegistryClient(reference: reference, push: false, job: job, backoff: options.backoff)

        progress.begin(.manifest, "\(reference)")
        let resolved = try await BlockingWork.run { try resolve(reference, client: client, platform: options.platform) }
        progress.end(.manifest, "\(resolved.digest) (\(resolved.manifest.layers.count) layer\(resolved.manifest.layers.count == 1 ? "" : "s")\(resolved.platform.map { ", \($0)" } ?? ""))")

        progress.begin(.config, resolved.manifest.config.digest)
        let configBytes = try await BlockingWork.run {
            try fetchDocumentBlob(resolved.manifest.config, client: client, what: "the image config")
        }
        let config: OCIImageConfig
        do {
            config = try JSONDecoder().decode(OCIImageConfig.self, from: Data(configBytes))
        } catch {
            throw OCIError.badDocument(what: "the image config", detail: "\(error)")
        }
        progress.end(.config, "\(configBytes.count) bytes")

        // The cache is held (shared) from before the first download until the image lists its
        // layers, so that `clean` cannot prune a layer in between.
        let pool = store.poolPath
        let cacheLock = try OCILayerCache.lock(pool: pool, exclusive: false)
        defer { cacheLock?.close() }
        let cache = OCILayerCache.directory(pool: pool)

        let pending = try await store.beginImage(name, kind: .directoryTree, force: options.force)
        let layers = resolved.manifest.layers
        let downloads = DownloadSet()
        let missing = layers.filter { !isCached($0, cache: cache) }
        let missingBytes = missing.reduce(UInt64(0)) { $0 + UInt64(max(0, $1.size)) }
        if !missing.isEmpty { progress.begin(PullPhase.download.rawValue, "\(missing.count) of \(layers.count) layers", total: missingBytes) }
        if missing.count < layers.count { progress.note("\(layers.count - missing.count) layer(s) already in the layer cache") }
        // Every layer's download starts now (the cached ones return at once); they are applied
        // in order as they complete, so unpacking overlaps the downloads still running.
        var seen = Set<String>()
        var tasks: [String: Task<String, Error>] = [:]
        for layer in layers where seen.insert(layer.digest).inserted {
            tasks[layer.digest] = Task {
                try await BlockingWork.run {
                    try fetchLayer(layer, client: client, cache: cache, downloads: downloads, progress: progress, job: job,
                                   backoff: options.backoff)
                }
            }
        }
        do {
            var diffIDs: [String] = []
            for (index, layer) in layers.enumerated() {
                guard let task = tasks[layer.digest] else { continue }
                let path = try await task.value
                let outcome = try await LayerImport.apply(layerPath: path, into: pending, maximumSize: options.maximumSize, job: job)
                if let expected = config.rootfs?.diff_ids, expected.count == layers.count, expected[index] != outcome.diffID {
                    throw OCIError.diffIDMismatch(layer: layer.digest, expected: expected[index], actual: outcome.diffID)
                }
                diffIDs.append(outcome.diffID)
                progress.end(.layer, "\(index + 1)/\(layers.count) \(layer.digest) (\(outcome.format)) applied")
            }
            if !missing.isEmpty { progress.end(.download, "\(missing.count) layer\(missing.count == 1 ? "" : "s")", bytes: missingBytes) }

            progress.begin(.commit, name.rawValue)
            let platform = config.os.map { [$0, config.architecture, config.variant].compactMap { $0 }.joined(separator: "/") } ?? resolved.platform
            let metadata = OCIMetadata(reference: "\(reference)", manifestDigest: resolved.digest, configDigest: resolved.manifest.config.digest,
                                       platform: platform, layers: layers.map(\.digest), config: config.runConfig)
            try pending.addSideFile(suffix: OCIMetadata.suffix, contents: try metadata.encoded())
            let provenance = Provenance(source: "\(reference.plainHTTP ? "http://" : "")\(reference)",
                                        sha256: String(resolved.digest.dropFirst(7)), format: "oci")
            let image = try pending.commit(readOnly: options.readOnly, provenance: provenance)
            progress.end(.commit, image.path)
            logger.info("pulled", metadata: ["reference": "\(reference)", "name": "\(name)"])
            return image
        } catch {
            pending.discard()
            downloads.abortAll()
            for task in tasks.values { _ = try? await task.value }
            if job.isCancelled { throw PullError.interrupted }
            throw error
        }
    }

    // MARK: manifests

    /// Fetches the manifest REF names; an index is resolved to `platform`'s manifest.
    static func resolve(_ reference: OCIReference, client: RegistryClient, platform: String) throws -> Resolved {
        let (bytes, type, digest) = try fetchManifest(reference.manifestReference, client: client)
        if let wanted = reference.digest, wanted != digest {
            throw OCIError.digestMismatch(what: "the manifest", expected: wanted, actual: digest)
        }
        if OCIMediaType.indexes.contains(type) {
            let index: OCIIndex
            do { index = try JSONDecoder().decode(OCIIndex.self, from: Data(bytes)) } catch {
                throw OCIError.badDocument(what: "the image index", detail: "\(error)")
            }
            let wanted = platform.split(separator: "/").map(String.init)
            let choice = index.manifests.first { descriptor in
                guard let p = descriptor.platform, OCIMediaType.manifests.contains(descriptor.mediaType) else { return false }
                if p.os != wanted.first || p.architecture != (wanted.count > 1 ? wanted[1] : "amd64") { return false }
                return wanted.count < 3 || p.variant == wanted[2]
            }
            guard let choice else {
                throw OCIError.noPlatform(platform, available: index.manifests.compactMap { $0.platform?.text })
            }
            let (inner, innerType, innerDigest) = try fetchManifest(choice.digest, client: client)
            guard innerDigest == choice.digest else {
                throw OCIError.digestMismatch(what: "the manifest for \(platform)", expected: choice.digest, actual: innerDigest)
            }
            guard OCIMediaType.manifests.contains(innerType) else {
                throw OCIError.unsupportedMediaType(innerType, what: "the manifest for \(platform)")
            }
            return Resolved(manifest: try decodeManifest(inner), digest: innerDigest, platform: choice.platform?.text)
        }
        guard OCIMediaType.manifests.contains(type) else { throw OCIError.unsupportedMediaType(type, what: "the manifest") }
        return Resolved(manifest: try decodeManifest(bytes), digest: digest, platform: nil)
    }

    /// GET /v2/REPO/manifests/REF: the bytes (at most 4 MiB), their media type, their digest.
    static func fetchManifest(_ ref: String, client: RegistryClient) throws -> ([UInt8], String, String) {
        let url = "\(client.reference.baseURL)/manifests/\(ref)"
        let response = try client.request(url, headers: [OCIMediaType.accept], limit: OCIPullOptions.documentLimit, what: "the manifest")
        try client.expectSuccess(response, url: url)
        let digest = "sha256:" + SHA256.hash(data: response.body).map { String(format: "%02x", $0) }.joined()
        var type = response.headers["content-type"].map { String($0.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces) } ?? ""
        // A registry may answer with a generic type: the document's own mediaType decides then.
        if !OCIMediaType.manifests.contains(type) && !OCIMediaType.indexes.contains(type) {
            struct Probe: Decodable {
                var mediaType: String?
                var manifests: [OCIDescriptor]?
                var layers: [OCIDescriptor]?
            }
            if let probe = try? JSONDecoder().decode(Probe.self, from: Data(response.body)) {
                if let declared = probe.mediaType {
                    type = declared
                } else if probe.manifests != nil {
                    type = OCIMediaType.ociIndex
                } else if probe.layers != nil {
                    type = OCIMediaType.ociManifest
                }
            }
            if type.isEmpty { type = "(none)" }
        }
        return (response.body, type, digest)
    }

    static func decodeManifest(_ bytes: [UInt8]) throws -> OCIManifest {
        let manifest: OCIManifest
        do { manifest = try JSONDecoder().decode(OCIManifest.self, from: Data(bytes)) } catch {
            throw OCIError.badDocument(what: "the manifest", detail: "\(error)")
        }
        guard manifest.schemaVersion == 2 else {
            throw OCIError.badDocument(what: "the manifest", detail: "schemaVersion \(manifest.schemaVersion), not 2")
        }
        guard OCIMediaType.configs.contains(manifest.config.mediaType) else {
            throw OCIError.unsupportedMediaType(manifest.config.mediaType, what: "the image config")
        }
        guard OCILayerCache.fileName(digest: manifest.config.digest) != nil else { throw OCIError.badDigest(manifest.config.digest) }
        for layer in manifest.layers {
            guard OCIMediaType.layers.contains(layer.mediaType) else {
                throw OCIError.unsupportedMediaType(layer.mediaType, what: "layer \(layer.digest)")
            }
            guard OCILayerCache.fileName(digest: layer.digest) != nil else { throw OCIError.badDigest(layer.digest) }
            guard layer.size >= 0 else { throw OCIError.badDocument(what: "the manifest", detail: "layer \(layer.digest) has a negative size") }
        }
        return manifest
    }

    /// A small blob (the config) in memory, checked against its descriptor.
    static func fetchDocumentBlob(_ descriptor: OCIDescriptor, client: RegistryClient, what: String) throws -> [UInt8] {
        guard descriptor.size >= 0, UInt64(descriptor.size) <= OCIPullOptions.documentLimit else {
            throw PullError.tooLarge("\(what) (\(descriptor.size) bytes)", limit: OCIPullOptions.documentLimit)
        }
        let url = "\(client.reference.baseURL)/blobs/\(descriptor.digest)"
        let response = try client.request(url, limit: UInt64(descriptor.size), what: what)
        try client.expectSuccess(response, url: url)
        let digest = "sha256:" + SHA256.hash(data: response.body).map { String(format: "%02x", $0) }.joined()
        guard digest == descriptor.digest else { throw OCIError.digestMismatch(what: what, expected: descriptor.digest, actual: digest) }
        return response.body
    }

    // MARK: layers

    static func isCached(_ layer: OCIDescriptor, cache: String) -> Bool {
        guard let file = OCILayerCache.fileName(digest: layer.digest),
              let status = try? FileStatus.lstat(cache + "/" + file) else { return false }
        return status.kind == .regular && status.size == UInt64(layer.size)
    }

    /// The layer blob's path in the cache, downloading it first when it is not there. The bytes
    /// are hashed as they arrive (the download file is read back as it grows); a blob that does
    /// not match its digest or size is deleted and fails the pull. An interrupted download stays
    /// as `.#sha256-HEX.download` and the next pull resumes it with a Range request.
    static func fetchLayer(_ layer: OCIDescriptor, client: RegistryClient, cache: String, downloads: DownloadSet,
                           progress: ProgressReporter, job: ImportJob, backoff: [Double]) throws -> String {
        guard let file = OCILayerCache.fileName(digest: layer.digest) else { throw OCIError.badDigest(layer.digest) }
        let final = cache + "/" + file
        if isCached(layer, cache: cache) { return final }
        // One download of a blob at a time: another pull fetching the same layer holds this lock,
        // and its result is taken once it is done.
        let lockPath = cache + "/.#" + file + ".lck"
        var blobLock: FileLock?
        while blobLock == nil {
            if job.isCancelled { throw PullError.interrupted }
            blobLock = try FileLock.tryLock(path: lockPath, kind: .exclusive)
            if blobLock == nil { Thread.sleep(forTimeInterval: 0.2) }
        }
        defer { blobLock?.releaseRemovingFile() }
        if isCached(layer, cache: cache) { return final }
        let partial = cache + "/.#" + file + ".download"
        let url = "\(client.reference.baseURL)/blobs/\(layer.digest)"
        let download = try PayloadDownload(url: url, partialPath: partial, maximumSize: UInt64(layer.size), ifNoneMatch: nil,
                                           progress: .silent, job: job, backoff: backoff, headers: client.authorizationHeaders)
        guard downloads.add(download) else { throw PullError.interrupted }
        var keep = true
        defer { if !keep { try? FileSystem.removeFileIfPresent(partial) } }
        do {
            _ = try download.begin()
            var hasher = SHA256()
            var count: UInt64 = 0
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            let reported = progress.style == .bar || progress.style == .json
            while true {
                let n = try download.read(into: &buffer)
                if n == 0 { break }
                buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                count += UInt64(n)
                if reported { progress.add(UInt64(n)) }
            }
            if let failure = download.waitUntilDone() { throw failure }
            let digest = "sha256:" + hasher.finalize().map { String(format: "%02x", $0) }.joined()
            guard count == UInt64(layer.size) else {
                keep = false
                throw OCIError.sizeMismatch(what: "layer \(layer.digest)", expected: layer.size, actual: count)
            }
            guard digest == layer.digest else {
                keep = false
                throw OCIError.digestMismatch(what: "layer blob \(url)", expected: layer.digest, actual: digest)
            }
            try Rename.rename(partial, to: final)
            return final
        } catch {
            download.abort()
            if let error = error as? PullError, !error.keepsPartialDownload { keep = false }
            throw error
        }
    }
}

/// The layer downloads of one pull, so that a failure stops the others.
final class DownloadSet: @unchecked Sendable {
    private let lock = NSLock()
    private var downloads: [PayloadDownload] = []
    private var aborted = false

    /// false when the pull already failed: the download must not start.
    func add(_ download: PayloadDownload) -> Bool {
        lock.withLock {
            if aborted { return false }
            downloads.append(download)
            return true
        }
    }

    func abortAll() {
        let all = lock.withLock {
            aborted = true
            return downloads
        }
        for download in all { download.abort() }
    }
}
