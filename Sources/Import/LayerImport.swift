import Foundation
import ImageStore
import LinuxSystem

/// Applies OCI image layers (tar, tar+gzip, tar+zstd; the compression found from magic bytes)
/// one after the other into one directory tree, as a container runtime's overlay would show
/// them (OCI image-spec layer.md): `.wh.NAME` removes NAME of the layers below, `.wh..wh..opq`
/// empties its directory of what the layers below put there, and an entry replaces whatever of
/// another type was at its path.
///
/// Every entry goes through import-tar's `TarEntryPolicy` first (no absolute paths, no `..`,
/// no writes through symlinks, hard links only inside the tree); whiteouts are held to the same
/// rules before anything is removed, so a whiteout cannot reach outside the tree either.
public enum LayerImport {
    public enum Error: Swift.Error, CustomStringConvertible {
        case badWhiteout(String)

        public var description: String {
            switch self {
            case .badWhiteout(let path): "layer has a whiteout that names no path inside the tree: \(path)"
            }
        }
    }

    /// What applying one layer found.
    public struct Outcome: Sendable {
        /// "tar", "tar+gzip", "tar+zstd".
        public var format: String
        /// `sha256:` of the uncompressed tar (the layer's DiffID in the image config).
        public var diffID: String
    }

    /// Applies the layer blob at `layerPath` on top of what `pending`'s temporary directory holds.
    /// The job stays attached to `pending`, so that a signal removes the temporary.
    public static func apply(layerPath: String, into pending: PendingImage, maximumSize: UInt64,
                             job: ImportJob) async throws -> Outcome {
        job.attach(pending)
        try job.checkCancelled()
        let temporary = pending.temporaryPath
        return try await BlockingThread.run {
            try apply(layerPath: layerPath, directory: temporary, maximumSize: maximumSize, job: job)
        }
    }

    /// The DiffID (`sha256:` of the uncompressed tar) of a layer blob at `path` (for push-oci,
    /// whose config lists it).
    public static func diffID(ofLayer path: String, job: ImportJob) async throws -> String {
        try await BlockingThread.run {
            let outer = PeekSource(CancellableSource(try InputFile(path: path), job: job))
            let compression = Compression.detect(try outer.peek(6))
            let decoded = HashingSource(try compression.decoder(outer))
            return "sha256:" + (try decoded.finish())
        }
    }

    static func apply(layerPath: String, directory temporary: String, maximumSize: UInt64, job: ImportJob) throws -> Outcome {
        let input = try InputFile(path: layerPath)
        let outer = PeekSource(CancellableSource(LimitedSource(input, limit: maximumSize, what: "the layer"), job: job))
        let compression = Compression.detect(try outer.peek(6))
        guard [.none, .gzip, .zstd].contains(compression) else {
            throw ArchiveError(message: "the layer is \(compression.rawValue)-compressed; OCI layers are tar, tar+gzip or tar+zstd")
        }
        let decoded = HashingSource(try compression.decoder(outer))
        let inner = LimitedSource(TarTailPadding(decoded), limit: maximumSize, what: "the decompressed layer")
        let directory = URL(fileURLWithPath: temporary).resolvingSymlinksInPath().path
        let probe = try TreeProbe(path: directory)
        let policy = LayerEntryPolicy(policy: TarEntryPolicy(probe: probe), probe: probe, directory: directory)
        var warnings: [String] = []
        defer { TarImport.logFolded(warnings) }
        // UNLINK: an entry never writes into what a lower layer left at its path (the policy has
        // already removed anything of another type); it replaces it.
        _ = try TarExtraction.run(source: inner, into: directory, check: policy.check, cancelled: job.checkCancelled,
                                  warning: { warnings.append($0); Importer.logger.debug("\($0)") },
                                  extraFlags: Int32(ARCHIVE_EXTRACT_UNLINK_FLAG), allowEmpty: true)
        let digest = try decoded.finish()
        return Outcome(format: compression == .none ? "tar" : "tar+\(compression.rawValue)", diffID: "sha256:" + digest)
    }
}

/// Ends a layer's tar stream with the padding of its last block and an end-of-archive marker
/// (zeros), which some layer writers leave out (umoci insert 0.4.7 does: its layers stop right
/// after the last file's data). Go's archive/tar, and so docker, containerd and umoci, accept
/// such layers; libarchive would refuse them as truncated. The layer's bytes are already checked
/// against its digest (and the DiffID is taken before this), so only missing zeros are added; a
/// tar that ends properly is read to its marker and the extra zeros are never looked at.
final class TarTailPadding: ByteSource {
    private let upstream: ByteSource
    private var count: UInt64 = 0
    private var padding: Int?

    init(_ upstream: ByteSource) { self.upstream = upstream }

    func read(into buffer: inout [UInt8]) throws -> Int {
        if padding == nil {
            let n = try upstream.read(into: &buffer)
            if n > 0 {
                count += UInt64(n)
                return n
            }
            padding = Int((512 - count % 512) % 512) + 1024
        }
        let n = min(padding ?? 0, buffer.count)
        for i in 0..<n { buffer[i] = 0 }
        padding = (padding ?? 0) - n
        return n
    }
}

/// libarchive's ARCHIVE_EXTRACT_UNLINK, without importing CArchive into this file.
let ARCHIVE_EXTRACT_UNLINK_FLAG: Int32 = 0x0010

/// The checks of one layer's entries: whiteouts applied (and refused when they escape), other
/// entries checked by TarEntryPolicy and cleared of a lower layer's entry of another type.
final class LayerEntryPolicy {
    static let whiteoutPrefix: [UInt8] = Array(".wh.".utf8)
    static let opaqueMarker: [UInt8] = Array(".wh..wh..opq".utf8)
    static let slash = UInt8(ascii: "/")

    let policy: TarEntryPolicy
    let probe: TreeProbe
    let directory: String
    /// Paths this layer wrote, and every directory above them: whiteouts in a layer hide only
    /// what the layers below it put there.
    private var written = Set<[UInt8]>()
    private var writtenParents = Set<[UInt8]>()

    init(policy: TarEntryPolicy, probe: TreeProbe, directory: String) {
        self.policy = policy
        self.probe = probe
        self.directory = directory
    }

    func check(_ header: TarEntryHeader) throws -> (path: [UInt8], hardlink: [UInt8]?)? {
        let path = try TarEntryPolicy.normalise(header.path)
        let slash = Self.slash
        let parent: [UInt8] = path.lastIndex(of: slash).map { Array(path[..<$0]) } ?? []
        let name: [UInt8] = path.lastIndex(of: slash).map { Array(path[($0 + 1)...]) } ?? path
        if name.starts(with: Self.whiteoutPrefix) {
            // Checked like any entry at that place: no symlink on the way, nothing outside.
            _ = try policy.check(TarEntryHeader(path: path, kind: .file))
            if name == Self.opaqueMarker {
                if parent.isEmpty || probe.kind(of: parent) == .directory { try removeLower(under: parent) }
                return nil
            }
            let hidden = Array(name.dropFirst(Self.whiteoutPrefix.count))
            if hidden.isEmpty || hidden == [UInt8(ascii: ".")] || hidden == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                throw LayerImport.Error.badWhiteout(TarEntryPolicy.show(header.path))
            }
            let target = parent.isEmpty ? hidden : parent + [slash] + hidden
            if !written.contains(target) && probe.kind(of: target) != nil {
                try FileSystem.removeTree(absolute(target))
            }
            return nil
        }
        let checked = try policy.check(header)
        if !checked.path.isEmpty, let existing = probe.kind(of: checked.path),
           !(existing == .directory && header.kind == .directory) {
            try FileSystem.removeTree(absolute(checked.path))
        }
        written.insert(checked.path)
        var prefix = checked.path
        while let cut = prefix.lastIndex(of: slash) {
            prefix = Array(prefix[..<cut])
            if !writtenParents.insert(prefix).inserted { break }
        }
        return checked
    }

    /// Removes what lower layers left under `directory` (relative; empty = the top), keeping what
    /// this layer wrote there.
    private func removeLower(under relative: [UInt8]) throws {
        let path = absolute(relative)
        for entry in try FileSystem.entries(path) {
            let child = relative.isEmpty ? Array(entry.utf8) : relative + [Self.slash] + Array(entry.utf8)
            if written.contains(child) || writtenParents.contains(child) {
                if probe.kind(of: child) == .directory { try removeLower(under: child) }
                continue
            }
            try FileSystem.removeTree(absolute(child))
        }
    }

    private func absolute(_ relative: [UInt8]) -> String {
        relative.isEmpty ? directory : directory + "/" + String(decoding: relative, as: UTF8.self)
    }
}
