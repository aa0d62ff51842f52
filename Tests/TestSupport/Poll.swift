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

/// The processes below one process, as /proc shows them (every thread's children), so that a
/// test can wait until a payload it started really runs instead of sleeping a guessed time.
public enum ProcessTree {
    /// Every descendant of `pid` with its command name (comm), parents before children.
    public static func descendants(of pid: Int32) -> [(pid: Int32, name: String)] {
        var result: [(pid: Int32, name: String)] = []
        var queue: [Int32] = [pid]
        while let current = queue.first {
            queue.removeFirst()
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(current)/task")) ?? []
            for task in tasks {
                let text = (try? String(contentsOfFile: "/proc/\(current)/task/\(task)/children", encoding: .utf8)) ?? ""
                for child in text.split(separator: " ").compactMap({ Int32($0) }) {
                    let name = ((try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? "")
                        .trimmingCharacters(in: .whitespacesAndNewlines)
                    result.append((child, name))
                    queue.append(child)
                }
            }
        }
        return result
    }

    /// Waits until a descendant of `pid` named `name` runs; false after `timeout` seconds.
    @discardableResult
    public static func waitForDescendant(of pid: Int32, named name: String, timeout: TimeInterval = 30) -> Bool {
        Poll.until(timeout: timeout, interval: 0.05) { descendants(of: pid).contains { $0.name == name } }
    }
}
