import Foundation
import Testing
import TestSupport

@Suite struct CLIBasicsTests {
    @Test func unknownOptionIsOneErrorLineAndStatus2() throws {
        let result = try Imagectl.run(["--no-such-option"])
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("error: "))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func helpListsVerbsAndExitsZero() throws {
        let result = try Imagectl.run(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("USAGE: imagectl"))
    }
}
