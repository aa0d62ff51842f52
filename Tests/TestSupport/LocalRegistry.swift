import Foundation

/// A distribution registry (Debian's `docker-registry`) on 127.0.0.1 for the OCI tests: storage
/// in a temporary directory, a port the kernel picks, its log in a file so that a test can count
/// the blob downloads it served. Stopped when the value goes away.
public final class LocalRegistry: @unchecked Sendable {
    // Immutable after init; deinit only stops the process.
    public let directory: TemporaryDirectory
    public let port: Int
    public let logPath: String
    private let process = Process()

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts the registry and waits until it says where it listens.
    public init() throws {
        directory = try TemporaryDirectory(prefix: "imagectl-registry")
        logPath = directory.appending("registry.log")
        let config = directory.appending("config.yml")
        // Port 0: the kernel picks a free one and the registry logs it ("listening on ...").
        try """
            version: 0.1
            log:
              level: info
              formatter: text
            storage:
              filesystem:
                rootdirectory: \(directory.appending("storage"))
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:0
            """.write(toFile: config, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: Tool.path("docker-registry") ?? "/usr/bin/docker-registry")
        process.arguments = ["serve", config]
        process.standardOutput = logHandle
        process.standardError = logHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? logHandle.close()
        var found: Int?
        let log = logPath
        let child = process
        Poll.until(timeout: 30) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on 127.0.0.1:") {
                found = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            return found != nil || !child.isRunning
        }
        guard let found else {
            if child.isRunning {
                kill(child.processIdentifier, SIGKILL)
                child.waitUntilExit()
            }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw Failure(description: "docker-registry did not start: \(text.suffix(500))")
        }
        port = found
    }

    /// `127.0.0.1:PORT`.
    public var host: String { "127.0.0.1:\(port)" }

    /// The reference imagectl takes for `repository:tag` here (plain http).
    public func reference(_ repository: String, tag: String) -> String { "http://\(host)/\(repository):\(tag)" }

    /// Pushes the OCI layout's `tag` as `repository:tag` with skopeo.
    public func push(layout: String, tag: String, repository: String, as remoteTag: String? = nil) throws {
        let result = try Tool.run("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", "oci:\(layout):\(tag)",
                                             "docker://\(host)/\(repository):\(remoteTag ?? tag)"])
        guard result.status == 0 else { throw Failure(description: "skopeo copy to the registry failed: \(result.stderr)") }
    }

    /// Copies `repository:tag` back into an OCI layout with skopeo.
    public func pull(repository: String, tag: String, into layout: String, as localTag: String) throws {
        let result = try Tool.run("skopeo", ["copy", "--quiet", "--src-tls-verify=false", "docker://\(host)/\(repository):\(tag)",
                                             "oci:\(layout):\(localTag)"])
        guard result.status == 0 else { throw Failure(description: "skopeo copy from the registry failed: \(result.stderr)") }
    }

    /// The successful blob downloads (GET /v2/REPOSITORY/blobs/...) the registry logged so far.
    public func blobGets(_ repository: String) -> [String] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line -> String? in
            guard let range = line.range(of: "\"GET /v2/\(repository)/blobs/") else { return nil }
            let rest = line[range.upperBound...]
            guard let status = rest.range(of: "\" ")?.upperBound, rest[status...].hasPrefix("200") || rest[status...].hasPrefix("206") else {
                return nil
            }
            return String(rest.prefix { $0 != " " })
        }
    }

    public func stop() {
        // SIGKILL: the test process may run with SIGTERM blocked, which the child inherits.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// OCI image layouts built with umoci for the registry tests, from the cached fixture trees
/// (which are copied, never changed).
public struct OCILayout: Sendable {
    public let path: String

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    @discardableResult
    static func sh(_ command: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw Failure(description: "\(command): \(result.stderr)") }
        return result.stdout
    }

    /// `umoci init` of a new layout at `path`.
    public init(path: String) throws {
        self.path = path
        try Self.sh("umoci init --layout \(path)")
    }

    /// A new image `tag` with one layer made of a copy of `tree` (e.g. the busybox fixture).
    public func newImage(_ tag: String, from tree: String, scratch: String) throws {
        let bundle = "\(scratch)/bundle-\(tag)"
        try Self.sh("umoci new --image \(path):\(tag) && umoci unpack --image \(path):\(tag) \(bundle) >/dev/null && cp -a \(tree)/. \(bundle)/rootfs/ && umoci repack --image \(path):\(tag) \(bundle) && rm -rf \(bundle)")
    }

    /// A new tag `tag` made of `base` plus a layer: `change` is a shell script run in the unpacked
    /// rootfs (its working directory); umoci records its deletions as whiteouts.
    public func addLayer(to base: String, as tag: String, scratch: String, change: String) throws {
        let bundle = "\(scratch)/bundle-\(tag)"
        try Self.sh("umoci unpack --image \(path):\(base) \(bundle) >/dev/null && (cd \(bundle)/rootfs && \(change)) && umoci repack --image \(path):\(tag) \(bundle) && rm -rf \(bundle)")
    }

    /// `umoci insert` of `source` (a file or directory) at `target` into a new tag `tag` made of
    /// `base` plus that layer; `opaque` hides what lower layers have under `target`.
    public func insert(into base: String, as tag: String, source: String, target: String, opaque: Bool = false) throws {
        try Self.sh("umoci insert --image \(path):\(base) --tag \(tag) \(opaque ? "--opaque " : "")\(source) \(target)")
    }

    /// A new tag `tag` made of `base` plus the uncompressed tar `layer`, added verbatim
    /// (`umoci raw add-layer`): hostile layers are made this way.
    public func addRawLayer(to base: String, as tag: String, layer: String) throws {
        try Self.sh("umoci raw add-layer --image \(path):\(base) --tag \(tag) \(layer)")
    }

    /// The manifest bytes of `tag` and the digests of its config and layers.
    public func manifest(_ tag: String) throws -> (bytes: Data, digest: String, config: String, layers: [String]) {
        struct Index: Decodable {
            struct Entry: Decodable {
                var digest: String
                var annotations: [String: String]?
            }
            var manifests: [Entry]
        }
        struct Manifest: Decodable {
            struct Descriptor: Decodable { var digest: String }
            var config: Descriptor
            var layers: [Descriptor]
        }
        let index = try JSONDecoder().decode(Index.self, from: Data(contentsOf: URL(fileURLWithPath: path + "/index.json")))
        guard let entry = index.manifests.last(where: { $0.annotations?["org.opencontainers.image.ref.name"] == tag }) else {
            throw Failure(description: "no tag \(tag) in \(path)")
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: blobPath(entry.digest)))
        let manifest = try JSONDecoder().decode(Manifest.self, from: bytes)
        return (bytes, entry.digest, manifest.config.digest, manifest.layers.map(\.digest))
    }

    /// Where the blob `sha256:HEX` is in the layout.
    public func blobPath(_ digest: String) -> String {
        path + "/blobs/sha256/" + digest.dropFirst("sha256:".count)
    }

    /// `umoci config` on `tag` (arguments such as `--config.entrypoint=/bin/sh`).
    public func configure(_ tag: String, _ arguments: [String]) throws {
        let quoted = arguments.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        try Self.sh("umoci config --image \(path):\(tag) \(quoted)")
    }

    /// `umoci unpack` of `tag` into `bundle`; the tree is `bundle/rootfs`.
    public func unpack(_ tag: String, into bundle: String) throws {
        try Self.sh("umoci unpack --image \(path):\(tag) \(bundle) >/dev/null")
    }
}
