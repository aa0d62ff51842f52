// The libarchive binding shared by the modules that use libarchive: its error type, status codes,
// file type bits and message lookup. ImageStore writes archives with it (ArchiveExport.swift);
// Import reads and extracts them (Import/Bindings/Archive.swift) on top of the same pieces, since
// Import depends on ImageStore and not the other way round.
import CArchive
import Glibc

/// A libarchive failure, with libarchive's own message (prefixed by the step that failed where
/// one is named).
public struct ArchiveError: Swift.Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    package init(message: String) {
        self.message = message
    }

    package init(step: String, message: String) {
        self.message = "\(step): \(message)"
    }

    /// errno values that mean the disk could not take the data.
    static let storageErrors: [Int32] = [ENOSPC, EDQUOT, EIO, EROFS, EFBIG]

    /// Whether the last failure of `handle` was the disk's (archive_errno): libarchive reports
    /// a failed write(2) while extracting as a mere ARCHIVE_WARN, which must not pass as one.
    package static func isStorageFailure(_ handle: OpaquePointer) -> Bool {
        storageErrors.contains(archive_errno(handle))
    }

    /// archive_error_string of `handle`, or `fallback` when libarchive has no message. When
    /// archive_errno is a storage failure (ENOSPC, EDQUOT, EIO, EROFS, EFBIG) its strerror text is
    /// added: libarchive's own message only says what it could not do ("Can't create 'etc/x'"),
    /// not why, and a full disk must be named as such. Other errno values are left out, since
    /// libarchive also sets them for format errors, where strerror would mislead.
    package static func text(of handle: OpaquePointer, fallback: String = "unknown libarchive error") -> String {
        let message = archive_error_string(handle).map { String(cString: $0) } ?? fallback
        let code = archive_errno(handle)
        // A refused operation (a device node, an owner, as non-root) is said as such too.
        guard storageErrors.contains(code) || code == EPERM || code == EACCES else { return message }
        let reason = String(cString: strerror(code))
        return message.contains(reason) ? message : "\(message): \(reason)"
    }
}

/// libarchive's status codes (archive.h).
package enum ArchiveStatus {
    package static let eof: Int32 = 1
    package static let ok: Int32 = 0
    package static let retry: Int32 = -10
    package static let warn: Int32 = -20
    package static let failed: Int32 = -25
    package static let fatal: Int32 = -30
}

/// libarchive's file type bits (AE_IF*): macros with casts that Swift does not import.
package enum ArchiveFileType {
    package static let mask: UInt32 = 0o170000
    package static let regular: UInt32 = 0o100000
    package static let directory: UInt32 = 0o040000
    package static let symlink: UInt32 = 0o120000
    package static let characterDevice: UInt32 = 0o020000
    package static let blockDevice: UInt32 = 0o060000
    package static let fifo: UInt32 = 0o010000
    package static let socket: UInt32 = 0o140000
}
