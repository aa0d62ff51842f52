import Crypto
import Foundation
import ProgressReport

/// Tells the job's progress reporter how many input bytes were read. Sits under the hash, so
/// that the bytes the hash reads at the end (after a qcow2 conversion by positioned reads) count
/// too.
final class ProgressSource: ByteSource {
    private let upstream: ByteSource
    private let progress: ProgressReporter

    init(_ upstream: ByteSource, progress: ProgressReporter) {
        self.upstream = upstream
        self.progress = progress
    }

    /// `upstream` itself when there is nobody to tell.
    static func wrap(_ upstream: ByteSource, job: ImportJob) -> ByteSource {
        guard let progress = job.progress, progress.style != .quiet, progress.style != .lines else { return upstream }
        return ProgressSource(upstream, progress: progress)
    }

    func read(into buffer: inout [UInt8]) throws -> Int {
        let n = try upstream.read(into: &buffer)
        if n > 0 { progress.add(UInt64(n)) }
        return n
    }
}

/// Hashes every byte read through it (SHA-256 of the input as read, before decompression).
final class HashingSource: ByteSource {
    private let upstream: ByteSource
    private var hasher = SHA256()
    private(set) var count: UInt64 = 0

    init(_ upstream: ByteSource) { self.upstream = upstream }

    func read(into buffer: inout [UInt8]) throws -> Int {
        let n = try upstream.read(into: &buffer)
        if n > 0 {
            hasher.update(data: buffer[0..<n])
            count += UInt64(n)
        }
        return n
    }

    /// Reads the rest of the input (so that the digest covers all of it) and returns the hex digest.
    func finish() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while try read(into: &buffer) > 0 {}
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Fails once more than `limit` bytes came through (SECURITY.md 6: decompression bombs and
/// oversized inputs stop at a cap instead of filling the disk).
final class LimitedSource: ByteSource {
    struct LimitExceeded: Error, CustomStringConvertible {
        var what: String
        var limit: UInt64
        var description: String { "\(what) exceeds the size limit of \(limit) bytes (see --max-size)" }
    }

    private let upstream: ByteSource
    private let limit: UInt64
    private let what: String
    private(set) var count: UInt64 = 0

    init(_ upstream: ByteSource, limit: UInt64, what: String) {
        self.upstream = upstream
        self.limit = limit
        self.what = what
    }

    func read(into buffer: inout [UInt8]) throws -> Int {
        let n = try upstream.read(into: &buffer)
        count += UInt64(n)
        if count > limit { throw LimitExceeded(what: what, limit: limit) }
        return n
    }
}

/// Lets the first bytes of a stream be looked at (for magic numbers) and then read again.
final class PeekSource: ByteSource {
    private let upstream: ByteSource
    private var head: [UInt8] = []
    private var headPosition = 0

    init(_ upstream: ByteSource) { self.upstream = upstream }

    /// Up to `count` bytes from the start of the stream (fewer only if the stream is shorter).
    func peek(_ count: Int) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: max(count, 64 << 10))
        while head.count < count {
            let n = try upstream.read(into: &chunk)
            if n == 0 { break }
            head.append(contentsOf: chunk[0..<n])
        }
        return Array(head.prefix(count))
    }

    func read(into buffer: inout [UInt8]) throws -> Int {
        if headPosition < head.count {
            let n = min(buffer.count, head.count - headPosition)
            buffer.replaceSubrange(0..<n, with: head[headPosition..<(headPosition + n)])
            headPosition += n
            if headPosition == head.count {
                head = []
                headPosition = 0
            }
            return n
        }
        return try upstream.read(into: &buffer)
    }
}

/// Polls a cancellation flag on every read, so a SIGINT/SIGTERM stops a long import at the next
/// chunk.
final class CancellableSource: ByteSource {
    private let upstream: ByteSource
    private let job: ImportJob

    init(_ upstream: ByteSource, job: ImportJob) {
        self.upstream = upstream
        self.job = job
    }

    func read(into buffer: inout [UInt8]) throws -> Int {
        try job.checkCancelled()
        return try upstream.read(into: &buffer)
    }
}
