import CArchive
import LinuxSystem
import ProgressReport
import SystemPackage

/// Compression of an exported file, chosen from its suffix like importctl/machinectl export do.
public enum ExportCompression: String, Sendable, CaseIterable, Codable {
    case uncompressed, xz, gzip, zstd, bzip2

    /// `.xz`, `.gz`, `.zst`, `.bz2` (and `.tgz`/`.txz`/`.tzst`/`.tbz2` for tarballs); anything else
    /// is uncompressed.
    public static func fromSuffix(_ path: String) -> ExportCompression {
        let lower = path.lowercased()
        if lower.hasSuffix(".xz") || lower.hasSuffix(".txz") { return .xz }
        if lower.hasSuffix(".gz") || lower.hasSuffix(".tgz") { return .gzip }
        if lower.hasSuffix(".zst") || lower.hasSuffix(".tzst") { return .zstd }
        if lower.hasSuffix(".bz2") || lower.hasSuffix(".tbz2") { return .bzip2 }
        return .uncompressed
    }
}

/// Streams image data into an archive file through libarchive: a pax tarball of a directory
/// tree (owners, modes, xattrs, ACLs, hard links, device nodes, sparse files, as read by
/// archive_read_disk), or one raw stream through a compression filter.
///
/// The archive handles are confined to the exporting call (never shared between threads), which is
/// why this type is not Sendable.
final class ArchiveExporter {
    private let archive: OpaquePointer
    /// Read buffer and a block of zeros for holes, allocated once per archive (not per file: a
    /// Debian tree has thousands of files).
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private let zeros = [UInt8](repeating: 0, count: 1 << 16)
    /// Told the bytes of image data read, chunk by chunk.
    var progress: ProgressReporter?
    /// Leave out what changes when nobody changed the tree (access and change times): the same
    /// tree then gives the same bytes, which an OCI layer's digest needs to be found again.
    let reproducible: Bool

    /// Opens a writer on `fd` in `format` ("pax" or "raw") with `compression`.
    init(fd: Int32, format: String, compression: ExportCompression, reproducible: Bool = false) throws {
        guard let archive = archive_write_new() else { throw ArchiveError(step: "archive_write_new", message: "out of memory") }
        self.archive = archive
        self.reproducible = reproducible
        try check(format == "raw" ? archive_write_set_format_raw(archive) : archive_write_set_format_pax(archive), "set format \(format)")
        if format != "raw" {
            // xattrs as SCHILY.xattr only: GNU tar and star read those, and libarchive does too;
            // the LIBARCHIVE.xattr duplicates only make GNU tar warn.
            try check(archive_write_set_format_option(archive, "pax", "xattrheader", "SCHILY"), "pax xattrheader")
        }
        switch compression {
        case .uncompressed: break
        case .xz:
            try check(archive_write_add_filter_xz(archive), "xz filter")
            // Use every core: libarchive passes this to liblzma's multi-threaded encoder.
            _ = archive_write_set_filter_option(archive, "xz", "threads", "0")
        case .gzip:
            try check(archive_write_add_filter_gzip(archive), "gzip filter")
            // The gzip header's time stamp is the time of writing.
            if reproducible { _ = archive_write_set_filter_option(archive, "gzip", "timestamp", nil) }
        case .zstd: try check(archive_write_add_filter_zstd(archive), "zstd filter")
        case .bzip2: try check(archive_write_add_filter_bzip2(archive), "bzip2 filter")
        }
        // Tarballs end on a full record; raw streams exactly where the data ends.
        if format == "raw" { try check(archive_write_set_bytes_in_last_block(archive, 1), "set last block") }
        try check(archive_write_open_fd(archive, fd), "open output")
    }

    deinit {
        archive_write_free(archive)
    }

    private func check(_ result: Int32, _ step: String) throws {
        if result < ArchiveStatus.warn {
            throw ArchiveError(step: step, message: ArchiveError.text(of: archive, fallback: "error \(result)"))
        }
    }

    /// Finishes the archive (flushes the compressor, writes the tar trailer).
    func finish() throws {
        try check(archive_write_close(archive), "close archive")
    }

    /// Writes one raw stream of `size` bytes read from `fd` (a raw image or a block device).
    func writeRaw(from fd: FileDescriptor, size: UInt64, name: String) throws {
        guard let entry = archive_entry_new() else { throw ArchiveError(step: "archive_entry_new", message: "out of memory") }
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, name)
        archive_entry_set_filetype(entry, ArchiveFileType.regular)
        archive_entry_set_perm(entry, 0o644)
        archive_entry_set_size(entry, Int64(size))
        try check(archive_write_header(archive, entry), "write header")
        var done: UInt64 = 0
        while done < size {
            let want = Int(min(UInt64(buffer.count), size - done))
            let got = try buffer.withUnsafeMutableBytes { raw in
                try fd.read(fromAbsoluteOffset: Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<want]))
            }
            if got == 0 { throw ArchiveError(step: "read image", message: "image ended at byte \(done) of \(size)") }
            try writeData(buffer, count: got)
            done += UInt64(got)
            progress?.add(UInt64(got))
        }
    }

    private func writeData(_ bytes: [UInt8], count: Int) throws {
        var offset = 0
        while offset < count {
            let n = bytes.withUnsafeBytes { archive_write_data(archive, $0.baseAddress! + offset, count - offset) }
            if n < 0 { try check(Int32(n), "write data"); return }
            if n == 0 { throw ArchiveError(step: "write data", message: "no progress") }
            offset += n
        }
    }

    /// Writes the tree at `root` as `./...` entries, depth first in name order (so that tar
    /// restores directory times after their contents, and the same tree gives the same archive),
    /// never following symlinks. libarchive reads each file's metadata (owner, mode, times, xattrs,
    /// ACLs, device numbers, sparse map: archive_read_disk_entry_from_file); hard links are
    /// resolved with its link resolver; holes are fed as zeros, which the pax writer drops.
    func writeTree(_ root: String) throws {
        guard let disk = archive_read_disk_new() else { throw ArchiveError(step: "archive_read_disk_new", message: "out of memory") }
        defer { archive_read_free(disk) }
        // Physical: symlinks are archived as symlinks. No fflags: the immutable flag marks the
        // image read-only in this pool, it is not part of the image. Uid/gid names are not looked
        // up: host names mean nothing for an OS image, numeric ids do.
        archive_read_disk_set_symlink_physical(disk)
        archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_FFLAGS)
        guard let resolver = archive_entry_linkresolver_new() else { throw ArchiveError(step: "linkresolver", message: "out of memory") }
        defer { archive_entry_linkresolver_free(resolver) }
        archive_entry_linkresolver_set_strategy(resolver, archive_format(archive))
        try writeEntry(disk: disk, resolver: resolver, path: root, relative: ".", depth: 0)
    }

    private func writeEntry(disk: OpaquePointer, resolver: OpaquePointer, path: String, relative: String, depth: Int) throws {
        guard depth <= FileCopy.maximumDepth else { throw ArchiveError(step: "read \(relative)", message: "tree nested too deeply") }
        guard let entry = archive_entry_new() else { throw ArchiveError(step: "archive_entry_new", message: "out of memory") }
        defer { archive_entry_free(entry) }
        archive_entry_copy_pathname(entry, path)
        let result = archive_read_disk_entry_from_file(disk, entry, -1, nil)
        if result < ArchiveStatus.warn {
            throw ArchiveError(step: "read \(path)", message: ArchiveError.text(of: disk, fallback: "error \(result)"))
        }
        archive_entry_copy_pathname(entry, relative)
        if reproducible {
            archive_entry_unset_atime(entry)
            archive_entry_unset_ctime(entry)
            archive_entry_unset_birthtime(entry)
        }
        let status = try FileStatus.lstat(path)

        var current: OpaquePointer? = entry
        var spare: OpaquePointer?
        archive_entry_linkify(resolver, &current, &spare)
        // The tar strategy never defers an entry: `current` is this entry (a later name of a
        // hard-linked file comes back with its hardlink field set and size 0).
        if let current {
            try check(archive_write_header(archive, current), "write header \(relative)")
            if status.kind == .regular && archive_entry_hardlink(current) == nil && archive_entry_size(current) > 0 {
                try writeFileData(path, size: UInt64(archive_entry_size(current)), name: relative)
            }
        }
        if status.kind == .directory {
            for name in try FileSystem.entries(path).sorted() {
                try writeEntry(disk: disk, resolver: resolver, path: path + "/" + name,
                               relative: relative + "/" + name, depth: depth + 1)
            }
        }
    }

    /// Feeds the file's bytes to the writer: data segments as read, holes as zeros.
    private func writeFileData(_ path: String, size: UInt64, name: String) throws {
        let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec, .noFollow])
        defer { try? fd.close() }
        var progress: UInt64 = 0
        let zeros = zeros
        func writeZeros(until end: UInt64) throws {
            while progress < end {
                let count = Int(min(UInt64(zeros.count), end - progress))
                try writeData(zeros, count: count)
                progress += UInt64(count)
            }
        }
        for segment in try FileCopy.dataSegments(of: fd.rawValue, size: size, path: path) {
            try writeZeros(until: segment.lowerBound)
            while progress < segment.upperBound {
                let want = Int(min(UInt64(buffer.count), segment.upperBound - progress))
                let got = try buffer.withUnsafeMutableBytes { raw in
                    try fd.read(fromAbsoluteOffset: Int64(progress), into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<want]))
                }
                if got == 0 { throw ArchiveError(step: "read \(name)", message: "file shrank while being exported") }
                try writeData(buffer, count: got)
                progress += UInt64(got)
                self.progress?.add(UInt64(got))
            }
        }
        try writeZeros(until: size)
    }
}
