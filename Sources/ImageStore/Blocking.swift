import Foundation

/// Runs long blocking file work (tree copies, snapshots, exports) on a thread of its own, so that
/// it never occupies a thread of Swift's cooperative pool (ARCHITECTURE.md, "Processes and
/// threads"). The caller suspends until the work is done.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = "imagectl.store.io"
            // The tree copy and the tar export recurse once per directory level (bounded by
            // FileCopy.maximumDepth): give them room.
            thread.stackSize = 16 << 20
            thread.start()
        }
    }
}
