import Foundation

/// Waiting for something another process does, by its effect rather than by a fixed sleep: a
/// fixed sleep is too short on a loaded machine and wasted on a fast one.
public enum Poll {
    /// Checks `condition` every `interval` seconds until it holds (true) or `timeout` seconds
    /// have passed (false; the caller's #expect says what did not happen).
    @discardableResult
    public static func until(timeout: TimeInterval = 10, interval: TimeInterval = 0.02, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if try condition() { return true }
            if Date() >= deadline { return false }
            Thread.sleep(forTimeInterval: interval)
        }
    }
}
