import Crypto
import Foundation

/// Whole-file downloads of the small companions of an image: checksum files, signatures and side
/// files. Each is capped; a missing one (404, 410, or a missing file://) is `nil`, not an error;
/// transient failures are retried from the start with back-off.
enum SmallFetch {
    /// Where the bytes go: memory for checksum and signature files, a staged file for side files.
    final class Sink {
        let path: String?
        private(set) var bytes: [UInt8] = []
        private var file: PartialFile?
        private var hasher = SHA256()
        private(set) var count: UInt64 = 0

        init(path: String? = nil) { self.path = path }

        func reset() throws {
            bytes = []
            hasher = SHA256()
            count = 0
            if let path {
                file = try PartialFile(path: path)
                try file?.truncate(to: 0)
            }
        }

        func append(_ data: UnsafeRawBufferPointer) throws {
            if let file {
                try file.write(data, at: count)
            } else {
                bytes.append(contentsOf: data)
            }
            hasher.update(bufferPointer: data)
            count += UInt64(data.count)
        }

        var digest: String { hasher.finalize().map { String(format: "%02x", $0) }.joined() }
    }

    /// Fetches `url` into `sink`; false when it does not exist.
    static func fetch(_ url: String, into sink: Sink, limit: UInt64, what: String, job: ImportJobProbe,
                      backoff: [Double] = [0.5, 1, 2]) throws -> Bool {
        var attempt = 0
        while true {
            try sink.reset()
            let request = CurlTransfer(url: url)
            request.maximumSize = limit
            var responseError: PullError? = nil
            request.onHeaders = { response in
                switch response.status {
                case 200: return true
                case 404, 410: responseError = .notFound(url)
                case 401, 403, 407: responseError = .unauthorized(url, status: response.status)
                default: responseError = .httpStatus(url, status: response.status)
                }
                return false
            }
            request.onData = { data in
                if sink.count + UInt64(data.count) > limit {
                    responseError = .tooLarge("\(what) \(url)", limit: limit)
                    return false
                }
                do { try sink.append(data) } catch {
                    responseError = .transfer(url, detail: "\(error)")
                    return false
                }
                return true
            }
            request.onProgress = { _, _ in !job.isCancelled }
            var failure: CurlTransfer.Failure? = nil
            do { try request.perform() } catch let error as CurlTransfer.Failure { failure = error }
            if job.isCancelled { throw PullError.interrupted }
            if let responseError {
                if case .notFound = responseError { return false }
                if responseError.isRetryableStatus, attempt < backoff.count {
                    Thread.sleep(forTimeInterval: backoff[attempt])
                    attempt += 1
                    continue
                }
                throw responseError
            }
            if let failure {
                if failure.isFileNotFound { return false }
                if let error = PullError.final(failure, url: url, what: what, limit: limit) { throw error }
                if failure.isTransient && attempt < backoff.count {
                    Thread.sleep(forTimeInterval: backoff[attempt])
                    attempt += 1
                    continue
                }
                if failure.isPartialFile { throw PullError.truncated(url, received: sink.count, expected: nil) }
                throw PullError.transfer(url, detail: failure.message)
            }
            return true
        }
    }
}

/// What the fetches need of the import job: whether it was cancelled.
protocol ImportJobProbe: Sendable {
    var isCancelled: Bool { get }
}
