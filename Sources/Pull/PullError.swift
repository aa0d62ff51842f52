import Foundation

/// Why a pull failed, worded after what systemd-pull says where it has a text for it
/// (FORMATS.md section 4: "Download truncated", "Content length incorrect", 404 -> "Wrong URL?").
public enum PullError: Swift.Error, CustomStringConvertible, Sendable {
    case unsupportedURL(String)
    case noFileName(String)
    case notFound(String)
    case unauthorized(String, status: Int)
    case httpStatus(String, status: Int)
    case transfer(String, detail: String)
    /// No connection to the server (refused, unreachable, unknown host); nothing was received.
    case connectionFailed(String, detail: String)
    /// Writing the download to the pool failed (ENOSPC, EDQUOT, EIO): the download file is not
    /// kept (it is what filled the disk) and another mirror would not help.
    case storing(String, detail: String)
    case tlsVerification(String, detail: String)
    case truncated(String, received: UInt64, expected: UInt64?)
    case contentLengthIncorrect(String, announced: UInt64, actual: UInt64)
    case rangeNotHonoured(String)
    case changedDuringDownload(String)
    case tooLarge(String, limit: UInt64)
    case noChecksumFile(tried: [String])
    case checksumFileNamesItself(String)
    case noChecksumEntry(file: String, checksumFile: String)
    case conflictingChecksumEntries(file: String, checksumFile: String)
    case checksumMismatch(file: String, expected: String, actual: String)
    case noSignature(tried: [String])
    case badSignature(String, detail: String)
    case noKeyring(tried: [String])
    case gpgvMissing
    case exists(String)
    case keptCopyUnusable(String)
    case interrupted

    public var description: String {
        switch self {
        case .unsupportedURL(let url):
            return "'\(url)' is not an http://, https:// or file:// URL"
        case .noFileName(let url):
            return "'\(url)' does not end in a file name"
        case .notFound(let url):
            return "\(url): not found (404). (Wrong URL?)"
        case .unauthorized(let url, let status):
            return "\(url): the server refused access (\(status)); credentials are needed to download it"
        case .httpStatus(let url, let status):
            return "\(url): the server answered HTTP \(status)"
        case .transfer(let url, let detail):
            return "\(url): download failed: \(detail)"
        case .connectionFailed(let url, let detail):
            return "\(url): connection failed: \(detail)"
        case .storing(let url, let detail):
            return "\(url): cannot store the download: \(detail)"
        case .tlsVerification(let url, let detail):
            return "\(url): TLS certificate verification failed: \(detail)"
        case .truncated(let url, let received, let expected):
            let of = expected.map { " of \($0)" } ?? ""
            return "\(url): download truncated: the connection ended after \(received)\(of) bytes, retries did not get further"
        case .contentLengthIncorrect(let url, let announced, let actual):
            return "\(url): content length incorrect: the server announced \(announced) bytes but the file has \(actual)"
        case .rangeNotHonoured(let url):
            return "\(url): the server sent something other than the requested range; cannot resume the download"
        case .changedDuringDownload(let url):
            return "\(url): the file changed on the server during the download (ETag differs); pull again"
        case .tooLarge(let what, let limit):
            return "\(what) exceeds the size limit of \(limit) bytes"
        case .noChecksumFile(let tried):
            return "no checksum file found (tried \(tried.joined(separator: ", "))); use --verify=no to pull without one"
        case .checksumFileNamesItself(let name):
            return "'\(name)' is a checksum file itself; refusing to verify it against itself"
        case .noChecksumEntry(let file, let checksumFile):
            return "\(checksumFile) has no checksum line for '\(file)'"
        case .conflictingChecksumEntries(let file, let checksumFile):
            return "\(checksumFile) has differing checksum lines for '\(file)'"
        case .checksumMismatch(let file, let expected, let actual):
            return "checksum mismatch for '\(file)': expected \(expected), got \(actual)"
        case .noSignature(let tried):
            return "no signature found (tried \(tried.joined(separator: ", "))); refusing an unsigned download (use --verify=checksum to accept checksums alone)"
        case .badSignature(let file, let detail):
            return "signature of \(file) did not verify against the keyring: \(detail)"
        case .noKeyring(let tried):
            return "no keyring to verify signatures with (tried \(tried.joined(separator: ", "))); give --keyring= or use --verify=checksum"
        case .gpgvMissing:
            return "gpgv is not installed; it is needed for --verify=signature"
        case .exists(let name):
            return "image '\(name)' already exists (use --force to replace it)"
        case .keptCopyUnusable(let name):
            return "the kept download '\(name)' is not a raw file or a directory tree; remove it and pull again"
        case .interrupted:
            return "pull interrupted"
        }
    }

    /// Failures that only concern where the bytes came from: another mirror may do better. The
    /// bytes of a mirror are verified the same way, so trying the next one never weakens a check.
    var triesNextMirror: Bool {
        switch self {
        case .exists, .keptCopyUnusable, .interrupted, .storing, .unsupportedURL, .noFileName, .noKeyring, .gpgvMissing, .checksumFileNamesItself: false
        default: true
        }
    }

    /// Failures after which the bytes already downloaded are still good to resume from.
    var keepsPartialDownload: Bool {
        switch self {
        case .transfer, .connectionFailed, .truncated, .interrupted, .httpStatus, .tlsVerification: true
        default: false
        }
    }
}

extension PullError {
    /// An HTTP answer worth asking again after a pause (timeout, rate limit, server trouble),
    /// as opposed to one that will not change (404, 403, ...).
    var isRetryableStatus: Bool {
        guard case .httpStatus(_, let status) = self else { return false }
        return [408, 429, 500, 502, 503, 504].contains(status)
    }
}

extension PullError {
    /// The error a curl failure ends a request with at once, whatever retries are left: a TLS
    /// verification failure, a body over `limit` (CURLE_FILESIZE_EXCEEDED, 63), or no connection.
    /// nil for a failure the caller may retry or word itself.
    static func final(_ failure: CurlTransfer.Failure, url: String, what: String, limit: UInt64) -> PullError? {
        if failure.isTLSVerification { return .tlsVerification(url, detail: failure.message) }
        if failure.code == 63 { return .tooLarge("\(what) \(url)", limit: limit) }
        if failure.isConnectionFailure { return .connectionFailed(url, detail: failure.message) }
        return nil
    }
}
