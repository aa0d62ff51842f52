import Foundation

/// Runs one piece of host-side work (a helper program, mostly) on a thread of its own, so that
/// independent steps overlap; `wait()` gives its result or throws its error. The thread is made
/// by the calling thread and so is in the caller's network and mount namespaces, as the helper
/// programs it starts are.
final class BackgroundJob<T>: @unchecked Sendable {
    private var work: (() throws -> T)?
    private var result: Result<T, any Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ work: @escaping () throws -> T) {
        self.work = work
        Thread { [self] in
            result = Result { try self.work!() }
            self.work = nil
            done.signal()
        }.start()
    }

    /// Blocks until the work ended (any number of times).
    @discardableResult
    func wait() throws -> T {
        done.wait()
        done.signal()
        return try result!.get()
    }
}
