// libarchive: reading a tar (or a bare bzip2 stream) from a ByteSource through archive_read_open
// callbacks, and extracting entries with archive_write_disk. The entry checks of SECURITY.md 1-4
// live in TarEntryPolicy (plain Swift); this file only moves bytes and flags. The error type,
// status codes and file type bits are ImageStore's (Bindings/Libarchive.swift), shared with export.
import CArchive
import Foundation
import Glibc
import ImageStore

/// The client side of archive_read_open: hands libarchive chunks read from a ByteSource. The
/// chunk handed out must stay valid until the next callback, so it lives in memory owned here.
private final class ArchiveFeed {
    let source: ByteSource
    var chunk: [UInt8]
    let stable: UnsafeMutableRawPointer
    let capacity = 1 << 20
    var error: Swift.Error?

    init(source: ByteSource) {
        self.source = source
        chunk = [UInt8](repeating: 0, count: capacity)
        stable = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit { stable.deallocate() }
}

private func feedRead(_ archive: OpaquePointer?, _ client: UnsafeMutableRawPointer?,
                      _ buffer: UnsafeMutablePointer<UnsafeRawPointer?>?) -> la_ssize_t {
    guard let client else { return -1 }
    let feed = Unmanaged<ArchiveFeed>.fromOpaque(client).takeUnretainedValue()
    do {
        let count = try feed.source.read(into: &feed.chunk)
        feed.chunk.withUnsafeBytes { raw in
            if count > 0 { feed.stable.copyMemory(from: raw.baseAddress!, byteCount: count) }
        }
        buffer?.pointee = UnsafeRawPointer(feed.stable)
        return la_ssize_t(count)
    } catch {
        // archive_set_error is variadic (not callable from Swift); the stored error is what
        // failure() reports.
        feed.error = error
        return -1
    }
}

/// An archive_read handle fed from a ByteSource.
final class ArchiveReader {
    let handle: OpaquePointer
    private let feed: ArchiveFeed
    private var opened = false

    /// `configure` enables formats and filters on the fresh handle before it is opened.
    /// A reader of tar archives (any compression libarchive detects), as import-tar, the OCI
    /// layers and import-raw's one-file tars read them; anything else is "not a tar archive".
    static func tar(source: ByteSource) throws -> ArchiveReader {
        do {
            return try ArchiveReader(source: source) { handle in
                archive_read_support_filter_all(handle)
                archive_read_support_format_tar(handle)
                archive_read_support_format_gnutar(handle)
            }
        } catch let error as ArchiveError {
            throw ArchiveError(message: "not a tar archive: \(error.message)")
        }
    }

    init(source: ByteSource, configure: (OpaquePointer) -> Void) throws {
        guard let handle = archive_read_new() else { throw ArchiveError(message: "cannot allocate a libarchive reader") }
        self.handle = handle
        feed = ArchiveFeed(source: source)
        configure(handle)
        let status = archive_read_open(handle, Unmanaged.passUnretained(feed).toOpaque(), nil, feedRead, nil)
        guard status == ArchiveStatus.ok else { throw failure() }
        opened = true
    }

    deinit {
        archive_read_free(handle)
    }

    /// The error behind a failed call: the source's own error (a decoder's message) when the
    /// input failed, else libarchive's message.
    func failure() -> Swift.Error {
        if let error = feed.error { return error }
        return ArchiveError(message: Self.message(handle))
    }

    static func message(_ handle: OpaquePointer) -> String {
        ArchiveError.text(of: handle)
    }
}

/// Decompresses a bzip2 stream with libarchive's bzip2 filter and its "raw" format (zlib, xz and
/// zstd have direct bindings; libbz2 has no pkg-config file on Debian, libarchive links it anyway).
package final class Bzip2Decoder: ByteSource {
    public enum Error: Swift.Error, CustomStringConvertible {
        case corrupt(String)
        public var description: String {
            switch self {
            case .corrupt(let why): "bzip2 stream is corrupt: \(why)"
            }
        }
    }

    private let reader: ArchiveReader
    private var done = false

    public init(upstream: ByteSource) throws {
        do {
            reader = try ArchiveReader(source: upstream) { handle in
                archive_read_support_filter_bzip2(handle)
                archive_read_support_format_raw(handle)
            }
            var entry: OpaquePointer?
            let status = archive_read_next_header(reader.handle, &entry)
            if status != ArchiveStatus.ok { throw Error.corrupt(String(describing: reader.failure())) }
        } catch let error as Error {
            throw error
        } catch let error as ArchiveError {
            throw Error.corrupt(error.message)
        }
    }

    public func read(into buffer: inout [UInt8]) throws -> Int {
        if done { return 0 }
        let count = buffer.count
        let handle = reader.handle
        let n = buffer.withUnsafeMutableBytes { raw in archive_read_data(handle, raw.baseAddress, count) }
        if n < 0 {
            let failure = reader.failure()
            if failure is ArchiveError { throw Error.corrupt(String(describing: failure)) }
            throw failure
        }
        if n == 0 { done = true }
        return n
    }
}

/// What one tar entry claims to be, as read from its header.
package struct TarEntryHeader: Sendable {
    public enum Kind: Sendable { case file, directory, symlink, hardlink, characterDevice, blockDevice, fifo, socket, other }
    /// The path as stored (raw bytes: file names need not be UTF-8).
    public var path: [UInt8]
    public var kind: Kind
    /// Target of a hard link (a path inside the archive), if the entry is one.
    public var hardlinkTarget: [UInt8]?

    public init(path: [UInt8], kind: Kind, hardlinkTarget: [UInt8]? = nil) {
        self.path = path
        self.kind = kind
        self.hardlinkTarget = hardlinkTarget
    }
}

/// Extracts a tar stream into a directory with libarchive, asking `check` about every entry
/// before anything of it is written.
final class TarExtraction {
    private static let types: [UInt32: TarEntryHeader.Kind] = [
        ArchiveFileType.regular: .file, ArchiveFileType.directory: .directory,
        ArchiveFileType.symlink: .symlink, ArchiveFileType.characterDevice: .characterDevice,
        ArchiveFileType.blockDevice: .blockDevice, ArchiveFileType.fifo: .fifo,
        ArchiveFileType.socket: .socket,
    ]

    /// Flags for archive_write_disk: keep everything an OS tree carries, and the guards.
    /// SECURE_NOABSOLUTEPATHS cannot be used: entries are handed over with the (absolute) target
    /// directory prefixed, after TarEntryPolicy refused absolute and `..` paths on the original.
    static let diskFlags: Int32 = Int32(ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME
        | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS
        | ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS)

    /// Reads entries from `source` (already decompressed by our own decoders; libarchive's filters
    /// stay enabled for anything else) and writes them under `directory`, an absolute path with no
    /// symlinks in it. `check` returns the entry's path relative to the directory (normalised) and
    /// its hard link target, nil to skip the entry (an OCI whiteout, which the check applied
    /// itself), or throws to refuse the whole archive. `cancelled` is polled between entries and
    /// data blocks. `extraFlags` are added to `diskFlags`; `allowEmpty` accepts an archive
    /// without entries (an OCI layer may be one).
    static func run(source: ByteSource, into directory: String,
                    check: (TarEntryHeader) throws -> (path: [UInt8], hardlink: [UInt8]?)?,
                    cancelled: () throws -> Void,
                    warning: (String) -> Void, extraFlags: Int32 = 0, allowEmpty: Bool = false) throws -> Int {
        let reader = try ArchiveReader.tar(source: source)
        guard let disk = archive_write_disk_new() else { throw ArchiveError(message: "cannot allocate a libarchive writer") }
        defer { archive_write_free(disk) }
        archive_write_disk_set_options(disk, diskFlags | extraFlags)
        // Owners stay numeric (the image's own /etc/passwd is what counts, not the host's), as
        // `tar --numeric-owner` does: each entry's user and group names are dropped before it is
        // written. The lookup is still installed because GNU tar stores ACL entries by name only
        // ("user:adm:r--", no uid); like GNU tar (and so systemd-import), those names are
        // resolved on the host, or the ACL could not be restored at all.
        archive_write_disk_set_standard_lookup(disk)

        var entries = 0
        var entry: OpaquePointer?
        while true {
            try cancelled()
            let status = archive_read_next_header(reader.handle, &entry)
            if status == ArchiveStatus.eof { break }
            if status == ArchiveStatus.warn {
                warning(ArchiveReader.message(reader.handle))
            } else if status != ArchiveStatus.ok {
                if entries == 0, !(reader.failure() is ArchiveError) { throw reader.failure() }
                if entries == 0 { throw ArchiveError(message: "not a tar archive: \(ArchiveReader.message(reader.handle))") }
                throw reader.failure()
            }
            guard let entry else { throw ArchiveError(message: "libarchive returned no entry") }
            let header = describe(entry)
            guard let checked = try check(header) else {
                if archive_read_data_skip(reader.handle) != ArchiveStatus.ok { throw reader.failure() }
                entries += 1
                continue
            }
            let prefix = Array(directory.utf8) + [UInt8(ascii: "/")]
            (prefix + checked.path + [0]).withUnsafeBytes { raw in
                archive_entry_copy_pathname(entry, raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if let link = checked.hardlink {
                (prefix + link + [0]).withUnsafeBytes { raw in
                    archive_entry_copy_hardlink(entry, raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                }
            }
            archive_entry_set_uname(entry, nil)
            archive_entry_set_gname(entry, nil)
            let shown = String(decoding: checked.path, as: UTF8.self)
            let written = archive_write_header(disk, entry)
            if written == ArchiveStatus.warn && !ArchiveError.isStorageFailure(disk) {
                warning("\(shown): \(ArchiveReader.message(disk))")
            } else if written != ArchiveStatus.ok {
                throw ArchiveError(message: "cannot extract \(shown): \(ArchiveReader.message(disk))")
            }
            if written == ArchiveStatus.ok || written == ArchiveStatus.warn {
                try copyData(from: reader, to: disk, path: shown, cancelled: cancelled)
            }
            let finished = archive_write_finish_entry(disk)
            if finished == ArchiveStatus.warn && !ArchiveError.isStorageFailure(disk) {
                warning("\(shown): \(ArchiveReader.message(disk))")
            } else if finished != ArchiveStatus.ok {
                throw ArchiveError(message: "cannot finish \(shown): \(ArchiveReader.message(disk))")
            }
            entries += 1
        }
        // Closing applies the deferred directory modes and times.
        if archive_write_close(disk) != ArchiveStatus.ok {
            throw ArchiveError(message: "cannot finish extraction: \(ArchiveReader.message(disk))")
        }
        if entries == 0 && !allowEmpty { throw ArchiveError(message: "the tar archive has no entries") }
        return entries
    }

    private static func copyData(from reader: ArchiveReader, to disk: OpaquePointer, path: String,
                                 cancelled: () throws -> Void) throws {
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        while true {
            let status = archive_read_data_block(reader.handle, &block, &size, &offset)
            if status == ArchiveStatus.eof { return }
            if status != ArchiveStatus.ok && status != ArchiveStatus.warn {
                throw reader.failure()
            }
            // write_data_block keeps holes where the archive has them (sparse entries).
            let wrote = archive_write_data_block(disk, block, size, offset)
            // A failed write(2) (ENOSPC, EIO) comes back as ARCHIVE_WARN: a truncated file must
            // fail the import, not pass with a warning.
            if wrote < ArchiveStatus.warn || (wrote == ArchiveStatus.warn && ArchiveError.isStorageFailure(disk)) {
                throw ArchiveError(message: "cannot write \(path): \(ArchiveReader.message(disk))")
            }
            try cancelled()
        }
    }

    private static func describe(_ entry: OpaquePointer) -> TarEntryHeader {
        let path = archive_entry_pathname(entry).map(bytes) ?? []
        let hardlink = archive_entry_hardlink(entry).map(bytes)
        let type = UInt32(archive_entry_filetype(entry)) & ArchiveFileType.mask
        var kind = types[type] ?? .other
        if hardlink != nil { kind = .hardlink }
        return TarEntryHeader(path: path, kind: kind, hardlinkTarget: hardlink)
    }

    private static func bytes(_ string: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: UnsafeRawPointer(string).assumingMemoryBound(to: UInt8.self), count: strlen(string)))
    }
}

/// The one disk image file of a tar (Debian's cloud images ship as a tar.xz holding `disk.raw`),
/// read as a stream straight from libarchive: nothing of the archive is written to disk but that
/// file's bytes, through the caller's pipeline. Directory entries are passed over; any other
/// kind of entry, or a second regular file, refuses the archive. A sparse entry reads as zeros in
/// its holes (archive_read_data fills them), which the SparseWriter turns back into holes.
final class TarSingleFile: ByteSource {
    enum Error: Swift.Error, CustomStringConvertible {
        case noFile
        case severalFiles(String, String)
        case notRegular(String, String)

        var description: String {
            switch self {
            case .noFile:
                "the tar archive holds no regular file (import-raw takes a tar holding exactly one disk image file)"
            case .severalFiles(let first, let second):
                "the tar archive holds more than one file (\(first), \(second), ...); import-raw takes a tar holding exactly one disk image file"
            case .notRegular(let name, let kind):
                "the tar archive's entry \(name) is a \(kind), not a regular file; import-raw takes a tar holding exactly one disk image file"
            }
        }
    }

    private let reader: ArchiveReader
    /// The file's name in the archive, for messages.
    let name: String
    private var dataDone = false

    /// Reads headers up to the first regular file (the caller then reads its bytes).
    init(source: ByteSource) throws {
        reader = try ArchiveReader.tar(source: source)
        guard let first = try Self.nextEntry(reader, entriesSoFar: 0) else { throw Error.noFile }
        name = first
    }

    /// The next regular file's name, passing over directories; nil at the end of the archive.
    private static func nextEntry(_ reader: ArchiveReader, entriesSoFar: Int) throws -> String? {
        var entries = entriesSoFar
        while true {
            var entry: OpaquePointer?
            let status = archive_read_next_header(reader.handle, &entry)
            if status == ArchiveStatus.eof { return nil }
            if status != ArchiveStatus.ok && status != ArchiveStatus.warn {
                if entries == 0, reader.failure() is ArchiveError {
                    throw ArchiveError(message: "not a tar archive: \(ArchiveReader.message(reader.handle))")
                }
                throw reader.failure()
            }
            guard let entry else { throw ArchiveError(message: "libarchive returned no entry") }
            entries += 1
            let name = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            if archive_entry_hardlink(entry) != nil { throw Error.notRegular(name, "hard link") }
            switch UInt32(archive_entry_filetype(entry)) & ArchiveFileType.mask {
            case ArchiveFileType.regular: return name
            case ArchiveFileType.directory: continue
            case ArchiveFileType.symlink: throw Error.notRegular(name, "symbolic link")
            case ArchiveFileType.characterDevice, ArchiveFileType.blockDevice: throw Error.notRegular(name, "device node")
            case ArchiveFileType.fifo: throw Error.notRegular(name, "FIFO")
            case ArchiveFileType.socket: throw Error.notRegular(name, "socket")
            default: throw Error.notRegular(name, "special entry")
            }
        }
    }

    func read(into buffer: inout [UInt8]) throws -> Int {
        if dataDone { return 0 }
        let count = buffer.count
        let handle = reader.handle
        let n = buffer.withUnsafeMutableBytes { raw in archive_read_data(handle, raw.baseAddress, count) }
        if n < 0 { throw reader.failure() }
        if n == 0 { dataDone = true }
        return n
    }

    /// After the file's bytes: reads the rest of the archive, which may hold directories only.
    func finish() throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while try read(into: &buffer) > 0 {}
        if let second = try Self.nextEntry(reader, entriesSoFar: 1) { throw Error.severalFiles(name, second) }
    }
}
