import Foundation
import ImageStore
import LinuxSystem
import Logging

/// Where an import reads from.
public enum ImportSource: Sendable, Equatable {
    case file(String)
    case standardInput

    /// The source as recorded in the provenance: an absolute path, or "-".
    public var recordedName: String {
        switch self {
        case .standardInput: return "-"
        case .file(let path):
            if path.hasPrefix("/") { return path }
            return FileManager.default.currentDirectoryPath + "/" + path
        }
    }
}

/// Options shared by the import verbs.
public struct ImportOptions: Sendable {
    /// SECURITY.md 6: the default cap on input and decompressed sizes.
    public static let defaultMaximumSize: UInt64 = 64 << 30

    public var readOnly: Bool
    public var force: Bool
    /// Cap on the bytes read and on the bytes decompressed (and on a qcow2's virtual size).
    public var maximumSize: UInt64

    public init(readOnly: Bool = false, force: Bool = false, maximumSize: UInt64 = ImportOptions.defaultMaximumSize) {
        self.readOnly = readOnly
        self.force = force
        self.maximumSize = maximumSize
    }
}

/// Imports raw images, tarballs and directory trees into an ImageStore. All writing goes to the
/// store's `.#` temporary; any error (or a cancelled job) discards it, so no image ever appears
/// under its final name half-written.
public enum Importer {
    static let logger = Logger(label: "imagectl.import")

    /// Hands a value to the worker thread. Safe because the caller never touches it again after
    /// the hand-over: the worker is the only user from then on.
    private final class Transfer<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }

    /// The pending image plus what ends up in the provenance.
    struct Outcome: Sendable {
        var sha256: String?
        var format: String
    }

    /// Imports a raw disk image (plain or xz/gzip/zstd/bzip2-compressed; qcow2 is converted to raw).
    public static func importRaw(from source: ImportSource, as name: ImageName, into store: ImageStore,
                                 options: ImportOptions, job: ImportJob = ImportJob()) async throws -> Image {
        let input = Transfer(try open(source))
        let pool = store.poolPath
        let maximum = options.maximumSize
        return try await run(name: name, kind: .rawFile, source: source, store: store, options: options, job: job) { temporary in
            try RawImport.run(input: input.value, seekableFile: source != .standardInput ? input.value : nil, to: temporary,
                              spoolDirectory: pool, maximumSize: maximum, job: job)
        }
    }

    /// Imports a tarball (plain or compressed) as a directory tree.
    public static func importTar(from source: ImportSource, as name: ImageName, into store: ImageStore,
                                 options: ImportOptions, job: ImportJob = ImportJob()) async throws -> Image {
        let input = Transfer(try open(source))
        let maximum = options.maximumSize
        return try await run(name: name, kind: .directoryTree, source: source, store: store, options: options, job: job) { temporary in
            try TarImport.run(input: input.value, to: temporary, maximumSize: maximum, job: job)
        }
    }

    /// Imports a directory tree: a btrfs snapshot when the source is a subvolume on the pool's file
    /// system, otherwise a copy keeping owners, modes, xattrs, ACLs, hard links and sparse files.
    public static func importDirectory(_ directory: String, as name: ImageName, into store: ImageStore,
                                       options: ImportOptions, job: ImportJob = ImportJob()) async throws -> Image {
        let source = ImportSource.file(directory)
        let absolute = source.recordedName
        guard let status = try? FileStatus.stat(absolute), status.kind == .directory else {
            throw FilesystemImport.Error.notADirectory(directory)
        }
        return try await run(name: name, kind: .directoryTree, source: source, store: store, options: options, job: job) { temporary in
            try FilesystemImport.run(source: absolute, to: temporary, job: job)
        }
    }

    /// What a stream written by `write(_:from:into:maximumSize:job:)` turned out to be.
    public struct StreamResult: Sendable {
        /// Hex SHA-256 of every byte read from the source (the source is read to its end).
        public var sha256: String
        /// e.g. "raw+xz", "qcow2", "tar+zstd".
        public var format: String
    }

    /// What a stream holds: a disk image or a tarball.
    public enum StreamPayload: Sendable { case raw, tar }

    /// Writes a caller's byte stream (a download, for pull) into a pending image with the same
    /// pipeline as the import verbs (hash, caps, decompression, qcow2 conversion, sparse write or
    /// tar extraction), without committing: the caller checks the digest first, then commits or
    /// discards. The job stays attached to `pending`, so a signal still removes the temporary.
    public static func write(_ payload: StreamPayload, from source: ByteSource, into pending: PendingImage,
                             spoolDirectory: String, maximumSize: UInt64, job: ImportJob) async throws -> StreamResult {
        let input = Transfer(source)
        job.attach(pending)
        try job.checkCancelled()
        let temporary = pending.temporaryPath
        let outcome = try await BlockingThread.run {
            switch payload {
            case .raw:
                try RawImport.run(input: input.value, seekableFile: nil, to: temporary, spoolDirectory: spoolDirectory,
                                  maximumSize: maximumSize, job: job)
            case .tar:
                try TarImport.run(input: input.value, to: temporary, maximumSize: maximumSize, job: job)
            }
        }
        try job.checkCancelled()
        return StreamResult(sha256: outcome.sha256 ?? "", format: outcome.format)
    }

    private static func open(_ source: ImportSource) throws -> InputFile {
        switch source {
        case .standardInput: return InputFile(standardInput: ())
        case .file(let path): return try InputFile(path: path)
        }
    }

    private static func run(name: ImageName, kind: PendingImage.Kind, source: ImportSource, store: ImageStore,
                            options: ImportOptions, job: ImportJob,
                            work: @escaping @Sendable (String) throws -> Outcome) async throws -> Image {
        let pending = try await store.beginImage(name, kind: kind, force: options.force)
        job.attach(pending)
        defer { job.attach(nil) }
        do {
            try job.checkCancelled()
            let temporary = pending.temporaryPath
            let outcome = try await BlockingThread.run { try work(temporary) }
            try job.checkCancelled()
            let provenance = Provenance(source: source.recordedName, sha256: outcome.sha256, format: outcome.format)
            let image = try pending.commit(readOnly: options.readOnly, provenance: provenance)
            logger.info("imported", metadata: ["name": "\(name)", "format": "\(outcome.format)"])
            return image
        } catch {
            pending.discard()
            throw error
        }
    }
}
