import Foundation
import Testing
@testable import ProgressReport

/// The reporter's forms, driven directly (the CLI tests drive them through a pty and pipes).
@Suite struct ProgressReporterTests {
    /// Collects what the reporter writes.
    final class Sink: @unchecked Sendable {
        // Guarded by `lock`: the reporter may write from any thread.
        private let lock = NSLock()
        private var parts: [String] = []
        func write(_ text: String) { lock.withLock { parts.append(text) } }
        var text: String { lock.withLock { parts.joined() } }
    }

    @Test("the bar never reaches the last column, whatever the width and numbers")
    func barFitsEveryWidth() {
        let totals: [UInt64?] = [nil, 0, 1, 1 << 20, 123_456_789_012, UInt64.max / 2]
        for width in [1, 5, 10, 20, 40, 59, 60, 80, 132, 300] {
            for total in totals {
                for done in [UInt64(0), 1, 1 << 30, 999_999_999_999] {
                    let line = ProgressReporter.barLine(phase: "side-files", done: done, total: total, rate: 123_456_789,
                                                        eta: 4000, width: width)
                    #expect(line.count <= max(1, width - 1), "width \(width): '\(line)'")
                    #expect(!line.contains("\r") && !line.contains("\n"))
                }
            }
        }
        let wide = ProgressReporter.barLine(phase: "import", done: 50 << 20, total: 100 << 20, rate: Double(10 << 20), eta: 5, width: 100)
        #expect(wide.contains(" 50%") && wide.contains("[") && wide.contains("ETA 0:05"), "\(wide)")
        let narrow = ProgressReporter.barLine(phase: "import", done: 50 << 20, total: 100 << 20, rate: Double(10 << 20), eta: 5, width: 30)
        #expect(narrow.contains("50%") && narrow.count <= 29, "\(narrow)")
    }

    @Test("off a terminal only the final line; quiet says nothing; JSON is one object per line")
    func styles() throws {
        let lines = Sink()
        let plain = ProgressReporter(style: .lines) { lines.write($0) }
        plain.begin("import", "x", total: 100)
        for _ in 0..<100 { plain.add(1) }
        plain.end("import", "x as raw", bytes: 100)
        #expect(lines.text.hasPrefix("import: x as raw (100 B in "), "\(lines.text)")
        #expect(lines.text.filter { $0 == "\n" }.count == 1 && !lines.text.contains("\r"))

        let nothing = Sink()
        let quiet = ProgressReporter(style: .quiet) { nothing.write($0) }
        quiet.begin("import", "x", total: 100)
        quiet.add(100)
        quiet.end("import", "x", bytes: 100)
        quiet.note("n")
        #expect(nothing.text.isEmpty)

        let events = Sink()
        let json = ProgressReporter(style: .json) { events.write($0) }
        json.begin("verify", "root", total: 10)
        json.add(5)
        json.end("verify", "root", bytes: 10)
        json.result(["name": "a"])
        let objects = try events.text.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.map { $0["event"] as? String } == ["begin", "progress", "end", "done"])
        #expect(objects[1]["percent"] as? Int == 50 && objects[1]["total"] as? Int == 10)

        let bar = Sink()
        let terminal = ProgressReporter(style: .bar, columns: { 40 }) { bar.write($0) }
        terminal.begin("export", "a", total: 1000)
        terminal.add(10)
        terminal.end("export", String(repeating: "a very long detail ", count: 10), bytes: 1000)
        let segments = bar.text.replacingOccurrences(of: "\u{1B}[K", with: "")
            .components(separatedBy: CharacterSet(charactersIn: "\r\n")).filter { !$0.isEmpty }
        #expect(segments.contains { $0.contains("%") }, "\(segments)")
        #expect(segments.allSatisfy { $0.count <= 39 }, "\(segments)")
    }
}
