import Foundation
import ImageStore

/// The JSON documents of the distribution API and the OCI image spec that pull-oci reads and
/// push-oci writes, and the media types it accepts.
enum OCIMediaType {
    static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    static let ociIndex = "application/vnd.oci.image.index.v1+json"
    static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    static let ociConfig = "application/vnd.oci.image.config.v1+json"
    static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    static let manifests: Set<String> = [ociManifest, dockerManifest]
    static let indexes: Set<String> = [ociIndex, dockerList]
    static let configs: Set<String> = [ociConfig, dockerConfig]
    static let layers: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    ]
    /// The Accept header of a manifest request: all four kinds.
    static let accept = "Accept: \(ociManifest), \(ociIndex), \(dockerManifest), \(dockerList)"
}

struct OCIDescriptor: Codable, Sendable, Equatable {
    struct Platform: Codable, Sendable, Equatable {
        var architecture: String
        var os: String
        var variant: String?

        var text: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
    }

    var mediaType: String
    var digest: String
    var size: Int64
    var platform: Platform?
    var annotations: [String: String]?
}

/// An image manifest (OCI) or a Docker schema 2 manifest: the same fields.
struct OCIManifest: Codable, Sendable {
    var schemaVersion: Int
    var mediaType: String?
    var config: OCIDescriptor
    var layers: [OCIDescriptor]
}

/// An image index (OCI) or a Docker manifest list.
struct OCIIndex: Codable, Sendable {
    var schemaVersion: Int
    var mediaType: String?
    var manifests: [OCIDescriptor]
}

/// The parts of the image config pull-oci keeps (and push-oci writes).
struct OCIImageConfig: Codable, Sendable {
    struct RunConfig: Codable, Sendable {
        var Entrypoint: [String]?
        var Cmd: [String]?
        var Env: [String]?
        var WorkingDir: String?
        var User: String?
        var ExposedPorts: [String: EmptyObject]?
        var Labels: [String: String]?
    }
    struct EmptyObject: Codable, Sendable {}
    struct RootFS: Codable, Sendable {
        var type: String
        var diff_ids: [String]
    }

    var architecture: String?
    var os: String?
    var variant: String?
    var created: String?
    var config: RunConfig?
    var rootfs: RootFS?

    var runConfig: OCIMetadata.RunConfig {
        OCIMetadata.RunConfig(entrypoint: config?.Entrypoint, cmd: config?.Cmd, env: config?.Env, workingDir: config?.WorkingDir,
                              user: config?.User, exposedPorts: config?.ExposedPorts.map { $0.keys.sorted() },
                              labels: config?.Labels)
    }

    init(runConfig: OCIMetadata.RunConfig, diffID: String) {
        architecture = "amd64"
        os = "linux"
        // No creation time: the same tree and settings give the same config digest, so pushing
        // again uploads nothing.
        created = nil
        config = RunConfig(Entrypoint: runConfig.entrypoint, Cmd: runConfig.cmd, Env: runConfig.env, WorkingDir: runConfig.workingDir,
                           User: runConfig.user,
                           ExposedPorts: runConfig.exposedPorts.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, EmptyObject()) }) },
                           Labels: runConfig.labels)
        rootfs = RootFS(type: "layers", diff_ids: [diffID])
    }
}
