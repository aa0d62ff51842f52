import Foundation

/// input -> SHA-256 -> size cap -> our decompressors (multi-threaded xz) -> size cap -> libarchive
/// tar reader -> TarEntryPolicy -> archive_write_disk into the temporary directory.
///
/// The decompression is ours rather than libarchive's because libarchive's xz filter decodes on
/// one thread; its filters stay enabled for anything we do not recognise (lz4, lzip, compress).
enum TarImport {
    static func run(input: ByteSource, to temporary: String, maximumSize: UInt64, job: ImportJob) throws -> Importer.Outcome {
        let hashing = HashingSource(ProgressSource.wrap(input, job: job))
        let outer = PeekSource(CancellableSource(LimitedSource(hashing, limit: maximumSize, what: "the input"), job: job))
        let compression = Compression.detect(try outer.peek(6))
        let decoded = try compression.decoder(outer)
        let inner = LimitedSource(decoded, limit: maximumSize, what: "the decompressed archive")

        // Entries are handed to libarchive as absolute paths under the temporary directory, and
        // SECURE_SYMLINKS checks every component of them: resolve symlinks in the pool path first.
        let directory = URL(fileURLWithPath: temporary).resolvingSymlinksInPath().path
        let policy = TarEntryPolicy(probe: try TreeProbe(path: directory))
        let entries = try TarExtraction.run(
            source: inner, into: directory, check: policy.check, cancelled: job.checkCancelled,
            warning: { Importer.logger.warning("\($0)") })
        Importer.logger.debug("extracted", metadata: ["entries": "\(entries)"])
        let digest = try hashing.finish()
        return Importer.Outcome(sha256: digest, format: compression == .none ? "tar" : "tar+\(compression.rawValue)")
    }
}
