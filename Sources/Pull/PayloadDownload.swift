import Crypto
import Foundation
import Import
import ProgressReport

/// The payload download: libcurl appends the bytes as served to a `.#...download` file in the
/// pool on a thread of its own, and the import pipeline reads the same file back from offset 0
/// (as a `ByteSource`), waiting at the end until more arrives. So:
/// - hashing, decompression and writing run in the same pass as the download, with memory bounded
///   by the pipeline's buffers (the file, not a queue, absorbs any difference in speed);
/// - an interrupted download leaves its bytes on disk; the next pull of the same URL asks for the
///   rest with `Range:` + `If-Range: <ETag>` and the pipeline re-reads (so re-hashes) the kept
///   bytes first, which re-derives the running SHA-256 without storing hash state;
/// - a transfer that breaks off is retried from where it stopped, with back-off.
final class PayloadDownload: ByteSource, @unchecked Sendable {
    // Shared between the download thread and the reading (import) thread: every field below
    // `condition` is read and written only with it held.
    private let condition = NSCondition()
    private var available: UInt64 = 0
    private var finished = false
    private var failure: PullError?
    private var start: Start?
    private var aborted = false
    private var thread: Thread?
    private var threadDone = false

    enum Start: Sendable { case notModified, content }

    let url: String
    let file: PartialFile
    let maximumSize: UInt64
    let ifNoneMatch: String?
    let progress: ProgressReporter
    let job: ImportJob
    /// Retries of a transfer that made no progress, and the waits before them (seconds).
    let backoff: [Double]
    /// Extra request headers (a registry's Authorization).
    let headers: [String]

    /// Written by the download thread before `start` is published; read after `waitForStart`.
    private(set) var etag: String?
    private(set) var lastModified: String?
    private(set) var expectedTotal: UInt64?
    private(set) var resumedFrom: UInt64 = 0
    private(set) var rangeRequests = 0

    /// Only the reading thread touches this.
    private var readOffset: UInt64 = 0

    init(url: String, partialPath: String, maximumSize: UInt64, ifNoneMatch: String?, progress: ProgressReporter,
         job: ImportJob, backoff: [Double] = [0.5, 1, 2], headers: [String] = []) throws {
        self.headers = headers
        self.url = url
        self.file = try PartialFile(path: partialPath)
        self.maximumSize = maximumSize
        self.ifNoneMatch = ifNoneMatch
        self.progress = progress
        self.job = job
        self.backoff = backoff
    }

    /// Starts the download thread and waits until the first response says what comes: a 304, or
    /// content. Throws the download's error if it fails before that.
    func begin() throws -> Start {
        let worker = Thread { [self] in
            self.run()
            self.condition.lock()
            self.threadDone = true
            self.condition.broadcast()
            self.condition.unlock()
        }
        worker.name = "imagectl-pull"
        worker.stackSize = 4 << 20
        condition.lock()
        thread = worker
        condition.unlock()
        worker.start()

        condition.lock()
        defer { condition.unlock() }
        while start == nil && failure == nil && !finished { condition.wait() }
        if let start { return start }
        if let failure { throw failure }
        return .content
    }

    /// Stops the download (the import failed) and waits for its thread to end.
    func abort() {
        condition.lock()
        aborted = true
        while thread != nil && !threadDone { condition.wait() }
        condition.unlock()
    }

    /// Waits for the download thread to end; returns its failure, if any.
    func waitUntilDone() -> PullError? {
        condition.lock()
        defer { condition.unlock() }
        while thread != nil && !threadDone { condition.wait() }
        return failure
    }

    /// SHA-256 of the bytes downloaded so far (read back from the download file), for saying why
    /// bytes that failed to decode were refused.
    func digestOfDownloadedBytes() throws -> String {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        let end = try file.size()
        while offset < end {
            let n = try file.read(into: &buffer, count: buffer.count, at: offset)
            if n == 0 { break }
            hasher.update(data: buffer[0..<n])
            offset += UInt64(n)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    // MARK: ByteSource (the import thread)

    func read(into buffer: inout [UInt8]) throws -> Int {
        while true {
            condition.lock()
            while readOffset >= available && !finished && failure == nil && !aborted { condition.wait() }
            let limit = available
            let failed = failure
            let done = finished
            condition.unlock()
            if readOffset < limit {
                let n = try file.read(into: &buffer, count: Int(min(UInt64(buffer.count), limit - readOffset)), at: readOffset)
                if n == 0 { throw PullError.transfer(url, detail: "the download file is shorter than recorded") }
                readOffset += UInt64(n)
                return n
            }
            if let failed { throw failed }
            if done { return 0 }
            throw PullError.interrupted
        }
    }

    // MARK: the download thread

    private func publish(start value: Start) {
        condition.lock()
        if start == nil { start = value }
        condition.broadcast()
        condition.unlock()
    }

    private func publish(available value: UInt64) {
        condition.lock()
        available = value
        condition.broadcast()
        condition.unlock()
    }

    private func fail(_ error: PullError) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }

    private var isAborted: Bool {
        condition.lock()
        defer { condition.unlock() }
        return aborted
    }

    private var hasStarted: Bool {
        condition.lock()
        defer { condition.unlock() }
        return start != nil
    }

    private func run() {
        do {
            try transfer()
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        } catch let error as PullError {
            fail(error)
        } catch {
            fail(.transfer(url, detail: "\(error)"))
        }
    }

    private func transfer() throws {
        // A kept download of the same URL with a validator can be resumed; anything else restarts.
        var offset: UInt64 = 0
        var validator: String? = nil
        if let kept = file.recorded(), kept.url == url, let size = try? file.size(), size > 0,
           let v = kept.etag ?? kept.lastModified {
            offset = size
            validator = v
            etag = kept.etag
            lastModified = kept.lastModified
        } else {
            try file.truncate(to: 0)
        }
        publish(available: offset)

        var first = true
        var stalled = 0
        let isFile = url.lowercased().hasPrefix("file:")
        var attempts = 0
        while true {
            if isAborted || job.isCancelled { throw PullError.interrupted }
            attempts += 1
            let request = CurlTransfer(url: url)
            request.maximumSize = maximumSize
            request.headers = headers
            if first, let ifNoneMatch { request.headers.append("If-None-Match: \(ifNoneMatch)") }
            if offset > 0 {
                request.rangeStart = offset
                if !isFile, let validator { request.headers.append("If-Range: \(validator)") }
                rangeRequests += 1
            }
            let startOffset = offset
            var writeOffset = offset
            // A 200 to a Range request once the reader has started: the body starts from zero
            // again, so its first `replayEnd` bytes are compared with those already on disk
            // (which the reader has consumed) instead of being written.
            var replayed: UInt64 = 0
            var replayEnd: UInt64 = 0
            var responseError: PullError? = nil
            var notModified = false

            request.onHeaders = { [self] response in
                switch response.status {
                case 304 where ifNoneMatch != nil:
                    notModified = true
                    return false
                case 200:
                    if writeOffset > 0 && hasStarted {
                        // The server sent the whole file (it ignores Range, or the validator
                        // changed) after the reader took bytes: restart from zero by replaying,
                        // and the bytes must be the same as before.
                        if let newTag = response.header("etag"), let etag, newTag != etag {
                            responseError = .changedDuringDownload(url)
                            return false
                        }
                        replayEnd = writeOffset
                        if let length = response.header("content-length").flatMap(UInt64.init), length < writeOffset {
                            responseError = .changedDuringDownload(url)
                            return false
                        }
                    } else if writeOffset > 0 {
                        // Before the reader started (a kept download of an earlier run): the kept
                        // bytes are dropped and the download restarts from zero.
                        do { try file.truncate(to: 0) } catch {
                            responseError = .transfer(url, detail: "\(error)")
                            return false
                        }
                        writeOffset = 0
                        publish(available: 0)
                    }
                    etag = response.header("etag")
                    lastModified = response.header("last-modified")
                    if let length = response.header("content-length").flatMap(UInt64.init) {
                        expectedTotal = length
                        if length > maximumSize {
                            responseError = .tooLarge("the download (\(length) bytes)", limit: maximumSize)
                            return false
                        }
                    }
                    if !isFile { file.record(url: url, etag: etag, lastModified: lastModified) }
                case 206:
                    if let newTag = response.header("etag"), let etag, newTag != etag {
                        responseError = .changedDuringDownload(url)
                        return false
                    }
                    if let range = response.header("content-range") {
                        guard let parsed = Self.parseContentRange(range), parsed.start == writeOffset else {
                            responseError = .rangeNotHonoured(url)
                            return false
                        }
                        if let total = parsed.total { expectedTotal = total }
                    } else if !isFile {
                        responseError = .rangeNotHonoured(url)
                        return false
                    }
                    if !hasStarted { resumedFrom = writeOffset }
                case 416 where writeOffset > 0:
                    // Nothing at or past our offset: the kept bytes are the whole file, or the
                    // server's earlier Content-Length was wrong.
                    let total = response.header("content-range").flatMap(Self.parseContentRange)?.total
                    if let total, total == writeOffset {
                        if let expectedTotal, expectedTotal != total {
                            responseError = .contentLengthIncorrect(url, announced: expectedTotal, actual: total)
                        } else {
                            expectedTotal = total
                        }
                    } else if let total, let announced = expectedTotal {
                        responseError = .contentLengthIncorrect(url, announced: announced, actual: total)
                    } else {
                        responseError = .rangeNotHonoured(url)
                    }
                    return false
                case 404, 410:
                    responseError = .notFound(url)
                    return false
                case 401, 403, 407:
                    responseError = .unauthorized(url, status: response.status)
                    return false
                default:
                    responseError = .httpStatus(url, status: response.status)
                    return false
                }
                publish(start: .content)
                return true
            }
            request.onData = { [self] bytes in
                var bytes = bytes
                if replayed < replayEnd {
                    let count = Int(min(UInt64(bytes.count), replayEnd - replayed))
                    var kept = [UInt8](repeating: 0, count: count)
                    let n = (try? file.read(into: &kept, count: count, at: replayed)) ?? 0
                    guard n == count, kept.elementsEqual(bytes.prefix(count)) else {
                        responseError = .changedDuringDownload(url)
                        return false
                    }
                    replayed += UInt64(count)
                    bytes = UnsafeRawBufferPointer(rebasing: bytes[count...])
                }
                if bytes.count == 0 { return !isAborted }
                if writeOffset + UInt64(bytes.count) > maximumSize {
                    responseError = .tooLarge("the download", limit: maximumSize)
                    return false
                }
                do { try file.write(bytes, at: writeOffset) } catch {
                    responseError = .storing(url, detail: "\(error)")
                    return false
                }
                writeOffset += UInt64(bytes.count)
                publish(available: writeOffset)
                return !isAborted
            }
            request.onProgress = { [self] total, _ in
                let expected = expectedTotal ?? (total > 0 ? startOffset + total : nil)
                progress.advance(.download, done: writeOffset, total: expected)
                return !isAborted && !job.isCancelled
            }

            var curlFailure: CurlTransfer.Failure? = nil
            do { try request.perform() } catch let failure as CurlTransfer.Failure { curlFailure = failure }
            first = false

            if notModified {
                publish(start: .notModified)
                return
            }
            if case .contentLengthIncorrect = responseError, let error = responseError { throw error }
            if request.response.status == 416 && responseError == nil {
                // The kept bytes were complete.
                publish(start: .content)
                return
            }
            if isAborted || job.isCancelled { throw PullError.interrupted }
            if let responseError {
                if responseError.isRetryableStatus, stalled < backoff.count {
                    Thread.sleep(forTimeInterval: backoff[stalled])
                    stalled += 1
                    continue
                }
                throw responseError
            }
            if let curlFailure {
                if curlFailure.isFileNotFound { throw PullError.notFound(url) }
                if curlFailure.isTLSVerification { throw PullError.tlsVerification(url, detail: curlFailure.message) }
                if curlFailure.code == 63 /* CURLE_FILESIZE_EXCEEDED */ {
                    throw PullError.tooLarge("the download", limit: maximumSize)
                }
                guard curlFailure.isTransient else { throw PullError.transfer(url, detail: curlFailure.message) }
                // The first request of this pull never connected: said once, not retried
                // (systemd-pull does not retry either); a broken transfer is resumed below.
                if curlFailure.isConnectionFailure && attempts == 1 {
                    throw PullError.connectionFailed(url, detail: curlFailure.message)
                }
                if writeOffset > startOffset { stalled = 0 } else { stalled += 1 }
                if stalled > backoff.count {
                    if curlFailure.isPartialFile || writeOffset > 0 {
                        throw PullError.truncated(url, received: writeOffset, expected: expectedTotal)
                    }
                    throw PullError.transfer(url, detail: curlFailure.message)
                }
                if stalled > 0 { Thread.sleep(forTimeInterval: backoff[stalled - 1]) }
                offset = writeOffset
                validator = etag ?? lastModified
                if offset > 0 && validator == nil && !isFile && hasStarted {
                    // Without a validator a range could splice two versions of the file.
                    throw PullError.truncated(url, received: writeOffset, expected: expectedTotal)
                }
                if offset > 0 && validator == nil && !isFile {
                    offset = 0
                    try file.truncate(to: 0)
                    publish(available: 0)
                }
                progress.note(writeOffset > 0 ? "download interrupted after \(writeOffset) bytes; resuming with a range request"
                                               : "download interrupted before any byte arrived; retrying")
                continue
            }
            // Complete: the length must be what the server announced.
            if let expectedTotal, expectedTotal != writeOffset {
                throw PullError.contentLengthIncorrect(url, announced: expectedTotal, actual: writeOffset)
            }
            publish(start: .content)
            progress.advance(.download, done: writeOffset, total: writeOffset, force: true)
            return
        }
    }

    /// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`), or `bytes */TOTAL` on a 416.
    static func parseContentRange(_ value: String) -> (start: UInt64?, total: UInt64?)? {
        let text = value.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = text.dropFirst(6)
        let parts = spec.split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let total = UInt64(parts[1])
        if parts[0] == "*" { return (nil, total) }
        let bounds = parts[0].split(separator: "-")
        guard bounds.count == 2, let start = UInt64(bounds[0]), let end = UInt64(bounds[1]), end >= start else { return nil }
        return (start, total)
    }
}
