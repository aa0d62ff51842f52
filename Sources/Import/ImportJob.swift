import Foundation
import ImageStore
import ProgressReport

/// One running import: its cancellation flag and the pending image it writes into, so that a
/// signal handler can stop it and remove the temporary.
public final class ImportJob: @unchecked Sendable {
    // Every mutable field is guarded by `lock`; the worker thread and the signal handler share it.
    private let lock = NSLock()
    private var cancelled = false
    private var signal: Int32?
    private var pending: PendingImage?

    public enum Error: Swift.Error, CustomStringConvertible {
        case interrupted
        public var description: String { "import interrupted" }
    }

    /// Told how many input bytes have been read (the caller begins and ends its phase).
    public let progress: ProgressReporter?

    public init(progress: ProgressReporter? = nil) {
        self.progress = progress
    }

    /// Asks the worker to stop at its next chunk or entry; `signal` is the signal that asked for
    /// it, if any (the first one counts), so the exit status can be 128 + that signal.
    public func cancel(signal: Int32? = nil) {
        lock.withLock {
            cancelled = true
            if self.signal == nil { self.signal = signal }
        }
    }

    public var isCancelled: Bool { lock.withLock { cancelled } }

    /// The signal that cancelled the job, or nil.
    public var cancellingSignal: Int32? { lock.withLock { signal } }

    func checkCancelled() throws {
        if isCancelled { throw Error.interrupted }
    }

    func attach(_ pending: PendingImage?) {
        lock.withLock { self.pending = pending }
    }

    /// Removes the temporary right away (used when the worker cannot be reached in time, e.g. it
    /// is blocked reading a pipe). `discard` is idempotent, so the worker's own cleanup may follow.
    public func discardNow() {
        let pending = lock.withLock { self.pending }
        pending?.discard()
    }
}

/// Runs blocking work (C decoders, libarchive, big reads and writes) on a thread of its own, off
/// the Swift cooperative pool (ARCHITECTURE.md: processes and threads).
enum BlockingThread {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "imagectl-import"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
