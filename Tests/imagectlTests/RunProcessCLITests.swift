import Foundation
import Testing
import TestSupport

/// `imagectl run --rlimit= --oom-score-adjust= --cpu-affinity=`, checked from inside.
@Suite("imagectl run process options", .serialized)
struct RunProcessCLITests {
    func run(_ options: [String], _ command: [String]) throws -> Tool.Result {
        let scratch = try TemporaryDirectory(prefix: "run-proc")
        let tree = scratch.appending("ptree")
        #expect(try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree]).status == 0)
        return try Imagectl.run(["run", "-q", "-D", tree] + options + command, environment: ["IMAGECTL_RUNTIME_DIR": scratch.appending("runtime")])
    }

    @Test func limitsReachThePayload() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let r = try run(["--rlimit=NOFILE=123:456", "--rlimit=RLIMIT_CORE=infinity", "--oom-score-adjust=345", "--cpu-affinity=0"],
                        ["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj; grep Cpus_allowed_list /proc/self/status"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "123\n456\nunlimited\n345\nCpus_allowed_list:\t0\n")
        // Without options the payload keeps imagectl's values.
        let plain = try run([], ["cat", "/proc/self/oom_score_adj"])
        #expect(plain.stdout == (try String(contentsOfFile: "/proc/self/oom_score_adj", encoding: .utf8)))
    }

    @Test func personalityChangesTheReportedArchitecture() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        #expect(try run(["--personality=x86"], ["uname", "-m"]).stdout == "i686\n")
        #expect(try run(["--personality=x86-64"], ["uname", "-m"]).stdout == "x86_64\n")
    }

    @Test func badValuesAreUsageErrors() throws {
        for options in [["--personality=arm64"], ["--rlimit=NOFILE=9:1"], ["--rlimit=FOO=1"], ["--oom-score-adjust=2000"], ["--cpu-affinity=a"]] {
            let r = try Imagectl.run(["run", "-D", "/tmp"] + options + ["true"])
            #expect(r.status == 2, "\(options)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(options): \(r.stderr)")
        }
    }
}
