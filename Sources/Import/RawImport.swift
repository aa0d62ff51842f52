import Foundation

/// input -> SHA-256 -> size cap -> decompression (detected by magic) -> size cap -> [the one
/// file of a tar] -> qcow2 conversion or plain copy -> sparse file.
enum RawImport {
    enum Error: Swift.Error, CustomStringConvertible {
        case empty
        case tarInTar(String)
        var description: String {
            switch self {
            case .empty: "the input holds no data (an empty disk image is refused)"
            case .tarInTar(let name): "the tar archive's file \(name) is itself a tar archive, not a disk image"
            }
        }
    }

    /// `seekableFile`: the input as a regular file that positioned reads work on (a plain qcow2 is
    /// then converted straight from it); nil for pipes and downloads.
    static func run(input: ByteSource, seekableFile: InputFile?, to temporary: String, spoolDirectory: String,
                    maximumSize: UInt64, job: ImportJob) throws -> Importer.Outcome {
        let hashing = HashingSource(ProgressSource.wrap(input, job: job))
        let outer = PeekSource(CancellableSource(LimitedSource(hashing, limit: maximumSize, what: "the input"), job: job))
        let compression = Compression.detect(try outer.peek(6))
        let decoded = try compression.decoder(outer)
        var inner = PeekSource(LimitedSource(decoded, limit: maximumSize, what: "the decompressed image"))
        var payload = PayloadFormat.detect(try inner.peek(512))
        // A tar holding one disk image file (Debian's cloud images: disk.raw in a tar.xz): that
        // file's bytes, streamed, go through the same pipeline as a bare image.
        var tarFile: TarSingleFile?
        if payload == .tar {
            let single = try TarSingleFile(source: inner)
            tarFile = single
            inner = PeekSource(single)
            payload = PayloadFormat.detect(try inner.peek(512))
            if payload == .tar { throw Error.tarInTar(single.name) }
        }
        let output = try OutputFile(path: temporary)
        let writer = SparseWriter(file: output)
        let suffix = (tarFile == nil ? "" : "+tar") + (compression == .none ? "" : "+\(compression.rawValue)")

        if payload == .qcow2 {
            let status = try seekableFile?.status()
            if compression == .none, tarFile == nil, let seekableFile, let status, status.isRegular {
                // Convert straight from the file with positioned reads; the hash then reads the
                // file once more, sequentially, from where the magic peek left off.
                let image = try QCOW2Image(file: seekableFile, fileSize: status.size, maximumVirtualSize: maximumSize)
                try image.convert(file: seekableFile, to: writer, cancelled: job.checkCancelled)
            } else {
                // A compressed (or piped) qcow2 needs random access: spool the decompressed bytes
                // into an anonymous O_TMPFILE in the pool (nothing to leak on a crash), sparse.
                let spool = try OutputFile(anonymousIn: spoolDirectory)
                let spoolWriter = SparseWriter(file: spool)
                try spoolWriter.copy(from: inner)
                try spool.truncate(to: spoolWriter.size)
                let reader = spool.reader()
                let image = try QCOW2Image(file: reader, fileSize: spoolWriter.size, maximumVirtualSize: maximumSize)
                try image.convert(file: reader, to: writer, cancelled: job.checkCancelled)
            }
            try tarFile?.finish()
            let digest = try hashing.finish()
            try writer.finish()
            return Importer.Outcome(sha256: digest, format: "qcow2" + suffix)
        }

        try writer.copy(from: inner)
        // An empty file, an empty pipe, or a compressed stream of nothing: a 0-byte "image"
        // holds no partition table and would only fail later, in dissect or boot.
        if writer.size == 0 { throw Error.empty }
        try tarFile?.finish()
        let digest = try hashing.finish()
        try writer.finish()
        return Importer.Outcome(sha256: digest, format: "raw" + suffix)
    }
}
