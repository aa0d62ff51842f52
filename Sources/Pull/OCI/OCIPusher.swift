import Crypto
import Foundation
import ImageStore
import Import
import LinuxSystem
import Logging
import ProgressReport

/// `push-oci`: a directory image to an OCI registry as a one-layer image (issue 19).
///
/// The tree is written as one pax tar (ImageStore's export, so owners, modes, xattrs and ACLs go
/// with it), compressed with zstd or gzip, into the pool's layer cache directory under a `.#`
/// name (the cache's shared lock keeps `clean` away meanwhile); its digest and DiffID make the
/// config (the image's own from pull-oci, else a minimal linux/amd64 one) and the manifest.
/// Each blob is uploaded only when a HEAD says the registry lacks it (POST, then one PUT with
/// the whole blob: the monolithic upload of the distribution spec); the manifest goes last, so
/// the tag never names an image whose blobs are missing.
public enum OCIPusher {
    static let logger = Logger(label: "imagectl.push-oci")

    public enum LayerFormat: String, Sendable, CaseIterable {
        case zstd, gzip

        var mediaType: String { "application/vnd.oci.image.layer.v1.tar+\(rawValue)" }
        var compression: ExportCompression { self == .zstd ? .zstd : .gzip }
    }

    /// What was pushed: the manifest's digest and how many blobs had to be uploaded.
    public struct Result: Sendable {
        public var manifestDigest: String
        public var uploaded: Int
        public var skipped: Int
    }

    public static func push(_ name: String, to reference: OCIReference, format: LayerFormat, store: ImageStore,
                            job: ImportJob, progress: ProgressReporter, backoff: [Double] = [0.5, 1, 2]) async throws -> Result {
        let image = try await store.image(named: name)
        guard image.type == .directory || image.type == .subvolume else { throw OCIError.notATree(image.name) }
        let stored = OCIMetadata.read(for: image)

        let pool = store.poolPath
        let cacheLock = try OCILayerCache.lock(pool: pool, exclusive: false)
        defer { cacheLock?.close() }
        let random = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let layerPath = OCILayerCache.directory(pool: pool) + "/.#push-\(random).tar.\(format.rawValue)"
        defer { try? FileSystem.removeFileIfPresent(layerPath) }

        progress.begin(PullPhase.pack.rawValue, image.name)
        try await store.exportTar(image.name, to: layerPath, compression: format.compression, progress: progress, reproducible: true)
        let layerDigest = try await BlockingWork.run { try digest(ofFile: layerPath) }
        let layerSize = try FileStatus.stat(layerPath).size
        let diffID = try await LayerImport.diffID(ofLayer: layerPath, job: job)
        progress.end(.pack, "\(layerDigest) (tar+\(format.rawValue))", bytes: layerSize)

        let config = OCIImageConfig(runConfig: stored?.config ?? OCIMetadata.RunConfig(), diffID: diffID)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let configBytes = Array(try encoder.encode(config))
        let configDescriptor = OCIDescriptor(mediaType: OCIMediaType.ociConfig, digest: sha256(configBytes),
                                             size: Int64(configBytes.count))
        let layerDescriptor = OCIDescriptor(mediaType: format.mediaType, digest: layerDigest, size: Int64(layerSize))
        let manifest = OCIManifest(schemaVersion: 2, mediaType: OCIMediaType.ociManifest, config: configDescriptor,
                                   layers: [layerDescriptor])
        let manifestBytes = Array(try encoder.encode(manifest))

        let client = RegistryClient(reference: reference, push: true, job: job, backoff: backoff)
        var uploaded = 0
        var skipped = 0
        progress.begin(.upload, "\(reference)")
        for (descriptor, body) in [(layerDescriptor, try UploadBody(path: layerPath)), (configDescriptor, UploadBody(bytes: configBytes))] {
            let sent = try await BlockingWork.run { try upload(descriptor, body: body, client: client) }
            if sent { uploaded += 1 } else { skipped += 1 }
        }
        let manifestDigest = sha256(manifestBytes)
        let tag = reference.tag ?? manifestDigest
        let url = "\(reference.baseURL)/manifests/\(tag)"
        let response = try await BlockingWork.run {
            try client.request(url, method: .put, headers: ["Content-Type: \(OCIMediaType.ociManifest)"], what: "the manifest upload",
                               upload: UploadBody(bytes: manifestBytes))
        }
        if !(200..<300).contains(response.status) { throw OCIError.uploadRefused(url, status: response.status) }
        progress.end(.upload, "\(uploaded) blob\(uploaded == 1 ? "" : "s") uploaded, \(skipped) already there; manifest \(manifestDigest)",
                     bytes: uploaded > 0 ? layerSize : nil)
        logger.info("pushed", metadata: ["name": "\(name)", "reference": "\(reference)"])
        return Result(manifestDigest: manifestDigest, uploaded: uploaded, skipped: skipped)
    }

    /// Uploads one blob unless the registry has it; true when it was uploaded.
    static func upload(_ descriptor: OCIDescriptor, body: UploadBody, client: RegistryClient) throws -> Bool {
        let base = client.reference.baseURL
        let head = try client.request("\(base)/blobs/\(descriptor.digest)", method: .head, what: "the blob check")
        if head.status == 200 { return false }
        let start = "\(base)/blobs/uploads/"
        let session = try client.request(start, method: .post, what: "the upload session")
        guard session.status == 202, let location = session.headers["location"] else {
            throw OCIError.uploadRefused(start, status: session.status)
        }
        var target = location
        if target.hasPrefix("/") {
            target = "\(client.reference.plainHTTP ? "http" : "https")://\(client.reference.apiHost)\(target)"
        }
        guard target.lowercased().hasPrefix("http://") || target.lowercased().hasPrefix("https://") else {
            throw OCIError.uploadRefused(location, status: session.status)
        }
        let digest = descriptor.digest.replacingOccurrences(of: ":", with: "%3A")
        target += (target.contains("?") ? "&" : "?") + "digest=\(digest)"
        let put = try client.request(target, method: .put, headers: ["Content-Type: application/octet-stream"],
                                     what: "the blob upload", upload: body)
        guard put.status == 201 || put.status == 204 else { throw OCIError.uploadRefused(start, status: put.status) }
        return true
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    static func digest(ofFile path: String) throws -> String {
        let file = try PartialFile(path: path)
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        while true {
            let n = try file.read(into: &buffer, count: buffer.count, at: offset)
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += UInt64(n)
        }
        return "sha256:" + hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
