// SIGINT/SIGTERM during an import: stop the worker and remove the temporary (FEATURES.md: a kill
// at any point leaves no image under the final name; a catchable signal leaves nothing at all).
import Dispatch
import Foundation
import Glibc

/// Watches SIGINT and SIGTERM while an import runs. On a signal the job is cancelled (the worker
/// stops at its next chunk or tar entry and discards the temporary); if the worker is stuck in a
/// blocking read (an idle pipe on stdin), the temporary is removed after a grace period and the
/// process exits with 128 + the signal number.
public final class InterruptWatch: @unchecked Sendable {
    // The dispatch sources are created once in init and only cancelled in stop(); Dispatch
    // objects are thread-safe.
    private let sources: [DispatchSourceSignal]
    public let graceSeconds: Double

    /// Half a second: a worker at work reaches its next chunk check well within it, and a
    /// signalled verb must end within a second (SECURITY.md 26) even when the worker is stuck.
    public init(job: ImportJob, graceSeconds: Double = 0.5) {
        self.graceSeconds = graceSeconds
        var sources: [DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            // The default action would kill the process before the temporary is removed.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                job.cancel(signal: number)
                DispatchQueue.global().asyncAfter(deadline: .now() + graceSeconds) {
                    job.discardNow()
                    Glibc.exit(128 + number)
                }
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// Stops watching and restores the default actions.
    public func stop() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }

    /// The exit status for an import stopped by `signal` (128 + the signal, as a shell reports
    /// it); SIGINT when the job was cancelled otherwise.
    public static func interruptedStatus(for job: ImportJob) -> Int32 {
        128 + (job.cancellingSignal ?? SIGINT)
    }
}
