import Foundation
import Testing
import TestSupport

/// The unit files shipped in units/ are what systemd accepts: `systemd-analyze verify` of an
/// instance of each, with ExecStart= pointing at the imagectl under test (verify checks that
/// the program exists).
@Suite("units/*.service")
struct UnitFileTests {
    @Test func unitFilesVerify() throws {
        try Privileged.require(.tool("systemd-analyze"))
        let scratch = try TemporaryDirectory(prefix: "units")
        let units = Fixtures.repositoryPath("").replacingOccurrences(of: "/fixtures", with: "/units")
        var instances: [String] = []
        for template in ["imagectl-run@.service", "imagectl-vm@.service"] {
            let text = try String(contentsOfFile: units + "/" + template, encoding: .utf8)
            #expect(text.contains("ExecStart=/usr/bin/imagectl "), "\(template)")
            try text.replacingOccurrences(of: "/usr/bin/imagectl", with: Imagectl.binary)
                .write(toFile: scratch.appending(template), atomically: true, encoding: .utf8)
            instances.append(scratch.appending(template.replacingOccurrences(of: "@.", with: "@web.")))
        }
        let r = try Tool.run("systemd-analyze", ["verify"] + instances)
        #expect(r.status == 0, "\(r.stderr)")
        // verify only warns about unknown keys and bad values: any word about our files fails.
        #expect(!r.stderr.contains(scratch.path), "\(r.stderr)")
        let run = try String(contentsOfFile: units + "/imagectl-run@.service", encoding: .utf8)
        for line in ["Type=notify", "RestartForceExitStatus=133", "KillMode=mixed", "--notify-ready=yes"] {
            #expect(run.contains(line), "\(line)")
        }
        // imagectl vm powers the guest off on SIGTERM itself (KillMode=mixed sends it to
        // imagectl only) and exits 133 after a reboot.
        let vm = try String(contentsOfFile: units + "/imagectl-vm@.service", encoding: .utf8)
        for line in ["RestartForceExitStatus=133", "SuccessExitStatus=133", "KillMode=mixed"] {
            #expect(vm.contains("\n" + line + "\n"), "\(line)")
        }
        #expect(!vm.contains("ExecStop="))
    }
}
