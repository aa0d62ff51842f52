// The download file a pull appends to while the import pipeline reads it back: positioned reads
// and writes on one descriptor, its size, truncation, and the xattrs that record where its bytes
// came from (so the next pull of the same URL and ETag can resume with a Range request).
import Foundation
import Glibc
import LinuxSystem

/// `.#NAME.<hex>.tmp.download` in the pool: the bytes as served, appended in order.
///
/// What makes a kept file resumable (all as user xattrs on the file):
///
/// | xattr                            | value                                         |
/// |----------------------------------|-----------------------------------------------|
/// | user.imagectl.pull.url           | the URL the bytes came from                   |
/// | user.imagectl.pull.etag          | the ETag of the response (may be absent)      |
/// | user.imagectl.pull.last_modified | Last-Modified of the response (may be absent) |
///
/// The offset to resume from is the file's size: every byte below it was written by a completed
/// pwrite, in order, so the file never has a hole in the middle.
final class PartialFile {
    static let urlAttribute = "user.imagectl.pull.url"
    static let etagAttribute = "user.imagectl.pull.etag"
    static let lastModifiedAttribute = "user.imagectl.pull.last_modified"

    let path: String
    let fd: Int32

    /// Opens (creating, mode 0600) the file read-write (open(2), O_RDWR|O_CREAT|O_CLOEXEC|O_NOFOLLOW).
    init(path: String) throws {
        self.path = path
        fd = try systemCall("open", path: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600) }
    }

    deinit { close(fd) }

    /// The current size (fstat(2)).
    func size() throws -> UInt64 {
        var st = stat()
        try systemCall("fstat", path: path) { fstat(fd, &st) }
        return UInt64(max(0, st.st_size))
    }

    /// ftruncate(2).
    func truncate(to size: UInt64) throws {
        try systemCall("ftruncate", path: path) { ftruncate(fd, off_t(size)) }
    }

    /// pwrite(2) of all of `bytes` at `offset`, looping over short writes.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = try Int(systemCall("pwrite", path: path) {
                pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            })
            if n == 0 { throw SystemCallError("pwrite", errno: .noSpace, path: path) }
            done += n
        }
    }

    /// pread(2) of up to `count` bytes at `offset` into `buffer[0..<count]`; 0 only at the end.
    func read(into buffer: inout [UInt8], count: Int, at offset: UInt64) throws -> Int {
        let fd = self.fd
        let path = self.path
        let wanted = min(count, buffer.count)
        return try buffer.withUnsafeMutableBytes { raw in
            try Int(systemCall("pread", path: path) { pread(fd, raw.baseAddress, wanted, off_t(offset)) })
        }
    }

    /// Records where the bytes come from (best effort: a pool without user xattrs just cannot resume).
    func record(url: String, etag: String?, lastModified: String?) {
        try? Xattr.set(path, name: Self.urlAttribute, string: url)
        if let etag { try? Xattr.set(path, name: Self.etagAttribute, string: etag) } else { try? Xattr.remove(path, name: Self.etagAttribute) }
        if let lastModified {
            try? Xattr.set(path, name: Self.lastModifiedAttribute, string: lastModified)
        } else {
            try? Xattr.remove(path, name: Self.lastModifiedAttribute)
        }
    }

    /// What `record` stored, or nil when the file holds nothing resumable.
    func recorded() -> (url: String, etag: String?, lastModified: String?)? {
        guard let url = (try? Xattr.getString(path, name: Self.urlAttribute)) ?? nil else { return nil }
        let etag = (try? Xattr.getString(path, name: Self.etagAttribute)) ?? nil
        let lastModified = (try? Xattr.getString(path, name: Self.lastModifiedAttribute)) ?? nil
        return (url, etag, lastModified)
    }
}

/// Small helpers over files the pull writes outside the pipeline.
enum PullFiles {
    /// Sets the modification (and access) time of `path` (utimensat(2), not following symlinks).
    static func setModificationTime(_ path: String, _ date: Date) throws {
        let seconds = date.timeIntervalSince1970
        var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
        try systemCall("utimensat", path: path) { utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) }
    }
}
