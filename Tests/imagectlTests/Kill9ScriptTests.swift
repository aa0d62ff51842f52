import Foundation
import Testing
import TestSupport

/// scripts/kill9.sh with one kill per verb: the script runs, reports every verb, and finds no
/// partial image, no leftover after clean and no failed rerun (issue 16). The closing note of
/// the issue runs it with N=100.
@Suite("kill9.sh")
struct Kill9ScriptTests {
    @Test("kill9.sh 1: one line per mutating verb, all counts 0")
    func oneKillPerVerb() throws {
        try Privileged.require(.root, .btrfs, .loopDevices, .fixture("busybox.tar"), .fixture("bare-ext4.raw"),
                               .tool("python3"), .tool("xz"), .tool("tar"), .tool("unshare"), .tool("losetup"))
        let script = URL(fileURLWithPath: Fixtures.repositoryPath("../scripts/kill9.sh")).standardized.path
        let result = try Tool.run(script, ["1"], environment: ProcessInfo.processInfo.environment.merging(["IMAGECTL": Imagectl.binary]) { $1 })
        #expect(result.status == 0, "stdout:\n\(result.stdout)\nstderr:\n\(result.stderr)")
        let rows = result.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: " ").map(String.init) }
        let verbs = rows.compactMap(\.first)
        for verb in ["import-raw", "import-tar", "import-fs", "pull-raw", "pull-tar", "clone", "rename", "remove", "export-tar", "export-raw",
                     "set-limit", "run-x", "run-i"] {
            #expect(verbs.contains(verb), "no line for \(verb): \(result.stdout)")
        }
        for row in rows where row.count == 5 {
            #expect(row[2...] == ["0", "0", "0"], "\(row.joined(separator: " "))")
        }
    }
}
