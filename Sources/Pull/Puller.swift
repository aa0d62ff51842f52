import Crypto
import Foundation
import ImageStore
import Import
import LinuxSystem
import Logging
import ProgressReport

extension ImportJob: ImportJobProbe {}

/// Options of `pull-raw` and `pull-tar`.
public struct PullOptions: Sendable {
    /// What the download is checked against (FORMATS.md section 4).
    public enum Verify: Sendable, Equatable {
        case no, checksum, signature
        /// A SHA-256 given on the command line (lower-case hex).
        case digest(String)
    }

    public var verify: Verify
    /// The gpg keyring for `.signature`; nil: systemd's defaults.
    public var keyring: String?
    public var force: Bool
    public var readOnly: Bool
    /// `--keep-download`: keep the verified download as a read-only hidden image and clone it.
    public var keepDownload: Bool
    /// Cap on the download and on its decompressed content (SECURITY.md 6).
    public var maximumSize: UInt64
    /// Other URLs of the same file, tried in order when one fails.
    public var mirrors: [String]
    /// Waits before the retries of a transfer that makes no progress (seconds).
    public var backoff: [Double]

    /// Checksum and signature files are capped at 1 MiB (SECURITY.md 6).
    public static let smallFileLimit: UInt64 = 1 << 20

    public init(verify: Verify = .signature, keyring: String? = nil, force: Bool = false, readOnly: Bool = false,
                keepDownload: Bool = false, maximumSize: UInt64 = ImportOptions.defaultMaximumSize, mirrors: [String] = [],
                backoff: [Double] = [0.5, 1, 2]) {
        self.verify = verify
        self.keyring = keyring
        self.force = force
        self.readOnly = readOnly
        self.keepDownload = keepDownload
        self.maximumSize = maximumSize
        self.mirrors = mirrors
        self.backoff = backoff
    }
}

/// How a pull ended.
public enum PullResult: Sendable {
    case pulled(Image)
    /// The server answered 304 to the ETag of the image already in the pool.
    case upToDate(name: String, etag: String)
}

/// Downloads an image, verifies it and imports it in one streaming pass (issue 6).
public enum Puller {
    static let logger = Logger(label: "imagectl.pull")

    /// The image name a URL gives (FORMATS.md section 4 suffix rules on its last path component).
    public static func localName(for url: String, payload: Importer.StreamPayload) -> String {
        let file = (try? fileName(of: url)) ?? url
        return payload == .raw ? LocalName.forRaw(file) : LocalName.forTar(file)
    }

    /// Pulls `url` (then each mirror in turn while they fail) into the store as `name`.
    public static func pull(_ payload: Importer.StreamPayload, url: String, as name: ImageName, into store: ImageStore,
                            options: PullOptions, job: ImportJob, progress: ProgressReporter) async throws -> PullResult {
        let sources = [url] + options.mirrors
        for (index, source) in sources.enumerated() {
            do {
                return try await pullOnce(payload, url: source, as: name, into: store, options: options, job: job, progress: progress)
            } catch let error as PullError where error.triesNextMirror && index + 1 < sources.count && !job.isCancelled {
                progress.note("\(error); trying \(sources[index + 1])")
            }
        }
        throw PullError.interrupted // not reached: the last source's error is thrown above
    }

    static func fileName(of url: String) throws -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              ["http", "https", "file"].contains(scheme) else {
            throw PullError.unsupportedURL(url)
        }
        let path = components.path
        guard !path.hasSuffix("/"), let last = path.split(separator: "/").last, !last.isEmpty else {
            throw PullError.noFileName(url)
        }
        return String(last)
    }

    /// The URL of `file` in the same directory as `url` (query and fragment dropped).
    static func sibling(of url: String, _ file: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.query = nil
        components.fragment = nil
        var path = components.path
        if let slash = path.lastIndex(of: "/") { path = String(path[...slash]) } else { path = "/" }
        components.path = path + file
        return components.string ?? url
    }

    private static func pullOnce(_ payload: Importer.StreamPayload, url: String, as name: ImageName, into store: ImageStore,
                                 options: PullOptions, job: ImportJob, progress: ProgressReporter) async throws -> PullResult {
        let file = try fileName(of: url)
        if ChecksumFile.isChecksumFileName(file) { throw PullError.checksumFileNamesItself(file) }

        // ETag cache: an image in the pool that came from this URL is re-downloaded only if changed.
        let pool = store.poolPath
        let existing = try? await store.image(named: name.rawValue)
        var cachedETag: String? = nil
        if let existing, existing.path.hasPrefix(pool + "/"),
           (try? Xattr.getString(existing.path, name: "user.source_url")) == url,
           let tag = (try? Xattr.getString(existing.path, name: "user.source_etag")) ?? nil {
            cachedETag = tag
        }
        if existing != nil && !options.force && cachedETag == nil { throw PullError.exists(name.rawValue) }
        // A kept download of this URL (--keep-download): its ETag is the one asked about, so that
        // a 304 lets the image be cloned from it.
        let kept = options.keepDownload ? await KeptDownload.find(payload, url: url, store: store) : nil
        let askedETag = kept?.etag ?? cachedETag

        // 1. Checksums (and their signature) first: small, and they decide what the payload must be.
        let checksums = try await BlockingWork.run {
            try fetchChecksums(url: url, file: file, options: options, job: job, progress: progress)
        }
        let expected: String? = switch options.verify {
        case .no: nil
        case .digest(let hex): hex
        case .checksum, .signature: try checksums?.digest(for: file)
        }

        // 2. The payload, streamed into a pending image.
        let pending = try await store.beginImage(name, kind: payload == .raw ? .rawFile : .directoryTree,
                                                 force: options.force || cachedETag != nil)
        let urlKey = SHA256.hash(data: Data(url.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        let partialPath = "\(pool)/.#\(name.rawValue).\(urlKey).tmp.download"
        let download: PayloadDownload
        do {
            download = try PayloadDownload(url: url, partialPath: partialPath, maximumSize: options.maximumSize,
                                           ifNoneMatch: askedETag, progress: progress, job: job, backoff: options.backoff)
        } catch {
            pending.discard()
            throw error
        }
        var keepPartial = false
        defer {
            // An empty download file has nothing to resume from (a connection that never came).
            if !keepPartial || (try? FileStatus.lstat(partialPath))?.size == 0 {
                try? FileSystem.removeFileIfPresent(partialPath)
            }
        }
        do {
            progress.begin(.download, url)
            let start = try await BlockingWork.run { try download.begin() }
            if start == .notModified, let kept, askedETag == kept.etag, cachedETag != kept.etag {
                _ = download.waitUntilDone()
                progress.end(.download, "not modified since the kept download \(kept.image.name) (ETag \(kept.etag))")
                progress.begin(.commit, name.rawValue)
                let staging = pending.temporaryPath
                let pool = store.poolPath
                try await BlockingWork.run { try KeptDownload.fill(staging, from: kept.image, pool: pool) }
                try? Xattr.set(staging, name: "user.source_etag", string: kept.etag)
                let provenance = Provenance(source: url, sha256: kept.image.provenance?.sha256, format: kept.image.provenance?.format)
                let image = try pending.commit(readOnly: options.readOnly, provenance: provenance)
                progress.end(.commit, image.path)
                logger.info("cloned from the kept download", metadata: ["url": "\(url)", "name": "\(name)", "kept": "\(kept.image.name)"])
                return .pulled(image)
            }
            if start == .notModified, let cachedETag {
                _ = download.waitUntilDone()
                pending.discard()
                progress.end(.download, "not modified since the last pull (ETag \(cachedETag))")
                return .upToDate(name: name.rawValue, etag: cachedETag)
            }
            if existing != nil && !options.force { throw PullError.exists(name.rawValue) }
            if download.resumedFrom > 0 {
                progress.note("resuming the kept download at byte \(download.resumedFrom)")
            }

            // Side files in parallel with the payload, staged beside the pending image.
            let sides = sideFiles(payload: payload, file: file, url: url, verify: options.verify)
            let staging = pending.temporaryPath
            let sideTask = Task {
                try await withThrowingTaskGroup(of: (String, String, String?).self) { group in
                    for (suffix, sideURL, sideName) in sides {
                        group.addTask {
                            let digest = try await BlockingWork.run {
                                try fetchSideFile(sideURL, suffix: suffix, to: staging + suffix, options: options, job: job)
                            }
                            return (sideName, suffix, digest)
                        }
                    }
                    var found: [(String, String, String)] = []
                    for try await (sideName, suffix, digest) in group {
                        if let digest { found.append((sideName, suffix, digest)) }
                    }
                    return found
                }
            }

            let result: Importer.StreamResult
            do {
                result = try await Importer.write(payload, from: download, into: pending, spoolDirectory: pool,
                                                  maximumSize: options.maximumSize, job: job)
            } catch {
                download.abort()
                sideTask.cancel()
                _ = try? await sideTask.value
                // A download error is the cause; the pipeline only saw its effect. (An
                // `interrupted` without a signal is the abort above, not a cause.)
                let failure = download.waitUntilDone()
                if let failure, case .interrupted = failure, !job.isCancelled {
                    throw error
                }
                if let failure { throw failure }
                // Bytes that do not decode and do not match the checksum: the checksum is the
                // clearer reason (the whole download is on disk; hash what arrived).
                if let expected, !(error is PullError), !job.isCancelled,
                   let actual = try? download.digestOfDownloadedBytes(), actual != expected {
                    throw PullError.checksumMismatch(file: file, expected: expected, actual: actual)
                }
                throw error
            }
            if let failure = download.waitUntilDone() { throw failure }
            let downloaded = (try? download.file.size()) ?? 0
            progress.end(.download, "\(file) as \(result.format)", bytes: downloaded)

            let found = try await sideTask.value

            // 3. Verification before anything gets a final name.
            progress.begin(.verify, file)
            if let expected, expected != result.sha256 {
                throw PullError.checksumMismatch(file: file, expected: expected, actual: result.sha256)
            }
            for (sideName, suffix, digest) in found {
                switch options.verify {
                case .no: break
                case .digest: try? FileSystem.removeFileIfPresent(staging + suffix)
                case .checksum, .signature:
                    let want = try checksums?.digest(for: sideName) ?? ""
                    if want != digest { throw PullError.checksumMismatch(file: sideName, expected: want, actual: digest) }
                }
            }
            progress.end(.verify, expected == nil ? "not verified (--verify=no)" : "SHA-256 matches")

            // 4. Provenance and the rename into place.
            progress.begin(.commit, name.rawValue)
            if let etag = download.etag { try? Xattr.set(staging, name: "user.source_etag", string: etag) }
            if let modified = download.lastModified, let date = Self.httpDate(modified) {
                try? PullFiles.setModificationTime(staging, date)
            }
            let provenance = Provenance(source: url, sha256: result.sha256, format: result.format)
            if options.keepDownload {
                // The verified download becomes the kept copy (read-only, hidden name from the URL
                // and ETag); the image is then cloned from it. Both stay under `.#` names until
                // each is complete.
                let keptName = try KeptDownload.name(payload, url: url, etag: download.etag)
                let keptPending = try await store.beginImage(keptName, kind: payload == .raw ? .rawFile : .directoryTree, force: true)
                let keptImage: Image
                do {
                    try KeptDownload.move(from: staging, to: keptPending.temporaryPath)
                    keptImage = try keptPending.commit(readOnly: true, provenance: provenance)
                } catch {
                    keptPending.discard()
                    throw error
                }
                progress.note("kept the download as \(keptImage.path)")
                let pool = store.poolPath
                try await BlockingWork.run { try KeptDownload.fill(staging, from: keptImage, pool: pool) }
            }
            let image = try pending.commit(readOnly: options.readOnly, provenance: provenance)
            progress.end(.commit, image.path)
            logger.info("pulled", metadata: ["url": "\(url)", "name": "\(name)"])
            return .pulled(image)
        } catch {
            pending.discard()
            download.abort()
            if job.isCancelled {
                keepPartial = true
                throw PullError.interrupted
            }
            if let error = error as? PullError, error.keepsPartialDownload { keepPartial = true }
            throw error
        }
    }

    /// Fetches the checksum file (and checks its signature) as `options.verify` asks.
    private static func fetchChecksums(url: String, file: String, options: PullOptions, job: ImportJob,
                                       progress: ProgressReporter) throws -> ChecksumFile? {
        guard options.verify == .checksum || options.verify == .signature else { return nil }
        let keyring = options.verify == .signature ? try SignatureCheck.keyring(options.keyring) : nil
        if keyring != nil { _ = try SignatureCheck.gpgvPath() }
        let candidates: [(name: String, signatures: [String])] = [
            (file + ".sha256", [file + ".sha256.asc", file + ".sha256.gpg"]),
            ("SHA256SUMS", ["SHA256SUMS.gpg", "SHA256SUMS.asc"]),
        ]
        for candidate in candidates {
            let sink = SmallFetch.Sink()
            let checksumURL = sibling(of: url, candidate.name)
            progress.begin(.checksum, checksumURL)
            guard try SmallFetch.fetch(checksumURL, into: sink, limit: PullOptions.smallFileLimit,
                                       what: "the checksum file", job: job, backoff: options.backoff) else { continue }
            progress.end(.checksum, candidate.name, bytes: sink.count)
            if let keyring {
                var verified = false
                for signatureName in candidate.signatures {
                    let signature = SmallFetch.Sink()
                    let signatureURL = sibling(of: url, signatureName)
                    guard try SmallFetch.fetch(signatureURL, into: signature, limit: PullOptions.smallFileLimit,
                                               what: "the signature", job: job, backoff: options.backoff) else { continue }
                    progress.begin(.signature, signatureURL)
                    try SignatureCheck.verify(data: sink.bytes, signature: signature.bytes, signatureName: signatureName,
                                              keyring: keyring)
                    progress.end(.signature, "good signature (keyring \(keyring))")
                    verified = true
                    break
                }
                if !verified { throw PullError.noSignature(tried: candidate.signatures.map { sibling(of: url, $0) }) }
            }
            return ChecksumFile(name: candidate.name, contents: sink.bytes)
        }
        throw PullError.noChecksumFile(tried: candidates.map { sibling(of: url, $0.name) })
    }

    /// (suffix, URL, file name) of the side files to look for: `NAME.nspawn` for both kinds, and
    /// the verity files for raw images. With a literal digest nothing could check them: none.
    private static func sideFiles(payload: Importer.StreamPayload, file: String, url: String,
                                  verify: PullOptions.Verify) -> [(String, String, String)] {
        if case .digest = verify { return [] }
        let base = payload == .raw ? LocalName.forRaw(file) : LocalName.forTar(file)
        let suffixes = payload == .raw ? [".nspawn", ".roothash", ".roothash.p7s", ".verity"] : [".nspawn"]
        return suffixes.map { ($0, sibling(of: url, base + $0), base + $0) }
    }

    /// Streams one side file to its staging path; its SHA-256, or nil when the server has none.
    private static func fetchSideFile(_ url: String, suffix: String, to path: String, options: PullOptions,
                                      job: ImportJob) throws -> String? {
        // The verity hash tree grows with the image; the others are small text or DER files.
        let limit = suffix == ".verity" ? options.maximumSize : PullOptions.smallFileLimit
        let sink = SmallFetch.Sink(path: path)
        let found = try SmallFetch.fetch(url, into: sink, limit: limit, what: "the side file", job: job, backoff: options.backoff)
        if !found {
            try? FileSystem.removeFileIfPresent(path)
            return nil
        }
        return sink.digest
    }

    /// An HTTP date (RFC 9110 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT").
    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}

/// Blocking work (libcurl transfers, gpgv) on a thread of its own, off the cooperative pool.
enum BlockingWork {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            thread.name = "imagectl-pull-work"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }
}
