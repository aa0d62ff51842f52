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
        // libarchive warns once per entry (a non-root import cannot set any owner): one line
        // says it, each stays available at debug level.
        var warnings: [String] = []
        defer { Self.logFolded(warnings) }
        let entries = try TarExtraction.run(
            source: inner, into: directory, check: policy.check, cancelled: job.checkCancelled,
            warning: { warnings.append($0); Importer.logger.debug("\($0)") })
        Importer.logger.debug("extracted", metadata: ["entries": "\(entries)"])
        let digest = try hashing.finish()
        return Importer.Outcome(sha256: digest, format: compression == .none ? "tar" : "tar+\(compression.rawValue)")
    }

    /// One warning for all of libarchive's: the first, and how many more there were.
    static func logFolded(_ warnings: [String]) {
        // The top directory's entry has an empty name: its line starts with ": ".
        guard let first = warnings.first.map({ $0.hasPrefix(": ") ? String($0.dropFirst(2)) : $0 }) else { return }
        let more = warnings.count - 1
        let rest = more == 0 ? "" : " (and \(more) more warning\(more == 1 ? "" : "s") like it; --log-level=debug lists them)"
        let hint = geteuid() != 0 && first.contains("Can't set user") ? " (not running as root: the archive's owners are not kept)" : ""
        Importer.logger.warning("\(first)\(rest)\(hint)")
    }
}
