import Foundation
import Testing
import TestSupport

/// Issue 17's error cases as a user meets them: each wrong command's exit status and its one
/// `error:` line; names the runner would refuse are refused when an image is made; what a
/// non-root user sees of a root-only pool; log level and --version.
@Suite("error messages", .serialized)
struct ErrorMessagesCLITests {
    /// A pool with a directory image "web" and a raw image "disk" (1 MiB of zeros).
    final class Pool: @unchecked Sendable {
        // Immutable after init; deinit (of `dir`) removes everything.
        let dir: TemporaryDirectory
        var path: String { dir.appending("pool") }
        init() throws {
            dir = try TemporaryDirectory(prefix: "imagectl-errors")
            try FileManager.default.createDirectory(atPath: path + "/web/etc", withIntermediateDirectories: true)
            try "ID=test\n".write(toFile: path + "/web/etc/os-release", atomically: false, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: path + "/disk.raw", contents: Data(count: 1 << 20))
        }
        func file(_ name: String) -> String { dir.appending(name) }
        /// Pool entries apart from lock files.
        func entries() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !$0.hasSuffix(".lck") }.sorted()
        }
    }

    /// Exactly one line on stderr, an `error:` line containing each of `texts`, and `status`.
    static func expectError(_ result: Tool.Result, status: Int32, containing texts: [String], notContaining banned: [String] = [],
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == status, "exit status \(result.status), stderr: \(result.stderr), stdout: \(result.stdout.prefix(200))", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        for text in texts { #expect(result.stderr.contains(text), "missing '\(text)' in: \(result.stderr)", sourceLocation: sourceLocation) }
        for text in banned { #expect(!result.stderr.contains(text), "unexpected '\(text)' in: \(result.stderr)", sourceLocation: sourceLocation) }
    }

    // MARK: Verbs and usage errors

    @Test func unknownVerbIsNamedWithASuggestionAndExits2() throws {
        let typo = try Imagectl.run(["lis"])
        Self.expectError(typo, status: 2, containing: ["unknown verb 'lis'", "did you mean 'list'?"], notContaining: ["Unexpected argument"])
        let far = try Imagectl.run(["frobnicate"])
        Self.expectError(far, status: 2, containing: ["unknown verb 'frobnicate'"], notContaining: ["did you mean"])
        // After a root option too.
        Self.expectError(try Imagectl.run(["--log-level=info", "shwo"]), status: 2, containing: ["unknown verb 'shwo'", "'show'"])
        // A verb's option before the verb is the option's error, not its value taken for a verb.
        Self.expectError(try Imagectl.run(["--root", "/tmp", "list"]), status: 2, containing: ["--root"], notContaining: ["unknown verb"])
    }

    @Test func helpOfAnUnknownVerbExits2AndOfAKnownOneExits0() throws {
        let unknown = try Imagectl.run(["help", "nosuchverb"])
        Self.expectError(unknown, status: 2, containing: ["nosuchverb"])
        #expect(unknown.stdout.isEmpty)
        let known = try Imagectl.run(["help", "list"])
        #expect(known.status == 0 && known.stdout.contains("imagectl list"), "\(known.stderr)")
    }

    @Test func pullOfSomethingThatIsNotAURLIsAUsageError() throws {
        let pool = try Pool()
        for verb in ["pull-raw", "pull-tar"] {
            Self.expectError(try Imagectl.run([verb, "notaurl", "x"], root: pool.path), status: 2, containing: ["'notaurl' is not an http://, https:// or file:// URL"])
        }
        #expect(pool.entries() == ["disk.raw", "web"])
    }

    @Test func badValuesFoundWhenTheVerbRunsAreUsageErrorsToo() throws {
        let pool = try Pool()
        let scratch = try TemporaryDirectory(prefix: "imagectl-usage")
        let environment = ["IMAGECTL_RUNTIME_DIR": scratch.path, "IMAGECTL_VM_TMPDIR": scratch.path]
        Self.expectError(try Imagectl.run(["stop", "sp ace"], root: pool.path, environment: environment), status: 2, containing: ["invalid machine name"])
        // vm refuses an image with nothing to boot before it looks at the name: a file system.
        try Privileged.require(.tool("mkfs.ext4"))
        let bootable = scratch.appending("fs.raw")
        try #require(try Tool.run("mkfs.ext4", ["-q", "-F", bootable, "4M"]).status == 0)
        Self.expectError(try Imagectl.run(["vm", "-i", bootable, "-M", "a b", "--print-command"], root: pool.path, environment: environment),
                         status: 2, containing: ["invalid machine name"])
        Self.expectError(try Imagectl.run(["vm", "-i", pool.path + "/disk.raw", "--ram=lots", "--print-command"], root: pool.path, environment: environment),
                         status: 2, containing: ["--ram"])
        Self.expectError(try Imagectl.run(["dissect", "--image-policy=bogus", "disk"], root: pool.path), status: 2, containing: ["image policy"])
        Self.expectError(try Imagectl.run(["pull-tar", "http://example.invalid/"], root: pool.path), status: 2, containing: ["does not end in a file name"])
    }

    // MARK: One name rule

    @Test func namesTheRunnerRefusesAreRefusedWhenAnImageIsMade() throws {
        let pool = try Pool()
        let tree = pool.file("tree")
        try FileManager.default.createDirectory(atPath: tree + "/etc", withIntermediateDirectories: true)
        let tarball = pool.file("tree.tar")
        try #require(try Tool.run("tar", ["-C", tree, "-cf", tarball, "."]).status == 0)
        let long = String(repeating: "a", count: 65)
        // ("-dash" after "--": without it the parser reads -d -a -s -h.)
        for bad in ["sp ace", long, ".hidden", "a..b", "trailing.", "ünï", "a:b"] {
            for command in [["import-fs", tree, bad], ["import-tar", tarball, bad], ["import-raw", pool.path + "/disk.raw", bad],
                            ["clone", "web", bad], ["rename", "web", bad],
                            ["pull-raw", "--verify=no", "file://" + pool.path + "/disk.raw", bad]] {
                let result = try Imagectl.run(command, root: pool.path)
                Self.expectError(result, status: 2, containing: ["invalid image name", "machine name", "at most 64 characters"])
            }
        }
        Self.expectError(try Imagectl.run(["clone", "--", "web", "-dash"], root: pool.path), status: 2, containing: ["invalid image name '-dash'"])
        // The store's own refusals stay (a name ending in .raw or a side-file suffix).
        Self.expectError(try Imagectl.run(["clone", "web", "x.raw"], root: pool.path), status: 2, containing: ["ends in '.raw'"])
        Self.expectError(try Imagectl.run(["import-fs", tree, "x.nspawn"], root: pool.path), status: 2, containing: ["ends in '.nspawn'"])
        // A name derived from a file that gives no valid name asks for NAME.
        let odd = pool.file("My Disk.raw")
        try FileManager.default.copyItem(atPath: pool.path + "/disk.raw", toPath: odd)
        Self.expectError(try Imagectl.run(["import-raw", odd], root: pool.path), status: 2, containing: ["give NAME explicitly"])
        #expect(pool.entries() == ["disk.raw", "web"], "\(pool.entries())")

        // The longest and dotted names the rule allows go in.
        let ok64 = String(repeating: "b", count: 64)
        for good in [ok64, "debian-12.v2_x"] {
            let result = try Imagectl.run(["clone", "web", good], root: pool.path)
            #expect(result.status == 0, "\(good): \(result.stderr)")
        }
    }

    // MARK: Existing names: --force only where it exists

    @Test func cloneAndRenameOfAnExistingNameDoNotSuggestForce() throws {
        let pool = try Pool()
        for command in [["clone", "web", "disk"], ["rename", "web", "disk"]] {
            Self.expectError(try Imagectl.run(command, root: pool.path), status: 1, containing: ["image 'disk' already exists"], notContaining: ["--force"])
        }
        // import-fs has --force, and says so.
        let tree = pool.file("tree")
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        Self.expectError(try Imagectl.run(["import-fs", tree, "web"], root: pool.path), status: 1, containing: ["already exists", "--force"])
        // clone and rename really have no --force.
        Self.expectError(try Imagectl.run(["clone", "--force", "web", "disk"], root: pool.path), status: 2, containing: ["--force"])
    }

    // MARK: Paths in file errors

    @Test func exportIntoAMissingDirectoryNamesThePath() throws {
        let pool = try Pool()
        let target = pool.file("no/such/dir/web.tar")
        Self.expectError(try Imagectl.run(["export-tar", "web", target], root: pool.path), status: 1,
                         containing: [target, pool.file("no/such/dir"), "does not exist"])
        Self.expectError(try Imagectl.run(["export-raw", "disk", pool.file("missing/disk.raw")], root: pool.path), status: 1,
                         containing: [pool.file("missing/disk.raw"), "does not exist"])
    }

    @Test func runOfAMissingImageFileNamesThePath() throws {
        try Privileged.require(.root)
        let pool = try Pool()
        let missing = pool.file("absent/disk.raw")
        Self.expectError(try Imagectl.run(["run", "-q", "-i", missing, "/bin/true"], root: pool.path), status: 1, containing: [missing])
        Self.expectError(try Imagectl.run(["dissect", missing], root: pool.path), status: 1, containing: [missing, "no such file"])
    }

    @Test func importOfADirectoryPointsToImportFs() throws {
        let pool = try Pool()
        let tree = pool.file("tree")
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        for verb in ["import-tar", "import-raw"] {
            Self.expectError(try Imagectl.run([verb, tree, "x"], root: pool.path), status: 1,
                             containing: ["'\(tree)' is a directory", "imagectl import-fs \(tree)"])
        }
        #expect(pool.entries() == ["disk.raw", "web"])
    }

    // MARK: A user who is not root

    /// Runs imagectl as `nobody` (runuser), with a copy of the binary the user can execute.
    static func runAsNobody(_ arguments: [String], pool: String, scratch: TemporaryDirectory) throws -> Tool.Result {
        let binary = scratch.appending("imagectl")
        if !FileManager.default.fileExists(atPath: binary) {
            try FileManager.default.copyItem(atPath: Imagectl.binary, toPath: binary)
            chmod(scratch.path, 0o755)
            chmod(binary, 0o755)
        }
        return try Tool.run("runuser", ["-u", "nobody", "--", "env", "IMAGECTL_ROOT=\(pool)", "IMAGECTL_LOCK_DIR=\(scratch.appending("locks"))",
                                        binary] + arguments)
    }

    @Test func aPoolTheUserMayNotReadIsSaidAsSuch() throws {
        try Privileged.require(.root, .tool("runuser"))
        let pool = try Pool()
        chmod(pool.dir.path, 0o755)
        chmod(pool.path, 0o700)
        let scratch = try TemporaryDirectory(prefix: "imagectl-nobody")
        let list = try Self.runAsNobody(["list"], pool: pool.path, scratch: scratch)
        Self.expectError(list, status: 1, containing: ["permission denied", pool.path, "not running as root"])
        #expect(!list.stdout.contains("No images"), "\(list.stdout)")
        Self.expectError(try Self.runAsNobody(["show", "web"], pool: pool.path, scratch: scratch), status: 1,
                         containing: ["permission denied", pool.path], notContaining: ["no image named"])
        Self.expectError(try Self.runAsNobody(["dissect", pool.path + "/disk.raw"], pool: pool.path, scratch: scratch), status: 1,
                         containing: ["permission denied", pool.path + "/disk.raw"], notContaining: ["no such file"])
        Self.expectError(try Self.runAsNobody(["dissect", "disk"], pool: pool.path, scratch: scratch), status: 1,
                         containing: ["permission denied", pool.path], notContaining: ["no image"])
        // Root still sees both images.
        let root = try Imagectl.run(["list"], root: pool.path)
        #expect(root.status == 0 && root.stdout.contains("web") && root.stdout.contains("disk"), "\(root.stderr)")
    }

    @Test func aNonRootTarImportSaysItsWarningsOnce() throws {
        try Privileged.require(.root, .tool("runuser"), .tool("python3"))
        let scratch = try TemporaryDirectory(prefix: "imagectl-nobody-tar")
        chmod(scratch.path, 0o755)
        // Twenty files owned by root: a user who is not root cannot give them their owner.
        let tarball = scratch.appending("owned.tar")
        let script = "import tarfile,io,sys\nt=tarfile.open(sys.argv[1],'w')\nfor i in range(20):\n d=b'x'*i; ti=tarfile.TarInfo('f%d'%i); ti.size=len(d); ti.uid=0; ti.gid=0; t.addfile(ti,io.BytesIO(d))\nt.close()\n"
        try #require(try Tool.run("python3", ["-c", script, tarball]).status == 0)
        chmod(tarball, 0o644)
        let pool = scratch.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        try #require(try Tool.run("chown", ["nobody", pool]).status == 0)
        let result = try Self.runAsNobody(["import-tar", tarball, "owned"], pool: pool, scratch: scratch)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)")
        #expect(lines.first?.hasPrefix("warning: ") == true && result.stderr.contains("more warnings like it")
                && result.stderr.contains("not running as root"), "stderr: \(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: pool + "/owned/f19"))
        // At debug level every warning is there.
        let pool2 = scratch.appending("pool2")
        try FileManager.default.createDirectory(atPath: pool2, withIntermediateDirectories: true)
        try #require(try Tool.run("chown", ["nobody", pool2]).status == 0)
        let debug = try Self.runAsNobody(["--log-level=debug", "import-tar", tarball, "owned"], pool: pool2, scratch: scratch)
        #expect(debug.status == 0, "\(debug.stderr)")
        #expect(debug.stderr.split(separator: "\n").filter { $0.hasPrefix("debug: ") && $0.contains("Can't set user") }.count >= 20, "\(debug.stderr)")
    }

    // MARK: import-raw of data that is no disk image

    @Test func importRawOfATextFileWarnsAndImports() throws {
        let pool = try Pool()
        let text = pool.file("notes.txt")
        try String(repeating: "just some text\n", count: 100).write(toFile: text, atomically: false, encoding: .utf8)
        let result = try Imagectl.run(["import-raw", text, "notes"], root: pool.path)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("warning: ") == true, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("neither a partition table nor a file system"), "\(result.stderr)")
        #expect(FileManager.default.contentsEqual(atPath: text, andPath: pool.path + "/notes.raw"))

        // The log level decides whether it is said: SYSTEMD_LOG_LEVEL=err hides it, and
        // --log-level (which wins over the variable) brings it back.
        let quiet = try Imagectl.run(["import-raw", text, "notes2"], root: pool.path, environment: ["SYSTEMD_LOG_LEVEL": "err"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "stderr: \(quiet.stderr)")
        let loud = try Imagectl.run(["--log-level=warning", "import-raw", text, "notes3"], root: pool.path, environment: ["SYSTEMD_LOG_LEVEL": "err"])
        #expect(loud.status == 0 && loud.stderr.contains("neither a partition table"), "stderr: \(loud.stderr)")
        let numeric = try Imagectl.run(["--log-level", "3", "import-raw", text, "notes4"], root: pool.path)
        #expect(numeric.status == 0 && numeric.stderr.isEmpty, "stderr: \(numeric.stderr)")
    }

    @Test func aBadLogLevelIsAUsageErrorAndABadVariableIsIgnoredWithAWarning() throws {
        let pool = try Pool()
        Self.expectError(try Imagectl.run(["--log-level=loud", "list"], root: pool.path), status: 2, containing: ["--log-level", "loud"])
        Self.expectError(try Imagectl.run(["--log-level"], root: pool.path), status: 2, containing: ["--log-level needs a value"])
        // After the verb it is refused, with where it goes.
        Self.expectError(try Imagectl.run(["list", "--log-level=debug"], root: pool.path), status: 2, containing: ["goes before the verb"])
        let ignored = try Imagectl.run(["list"], root: pool.path, environment: ["SYSTEMD_LOG_LEVEL": "loud"])
        #expect(ignored.status == 0 && ignored.stdout.contains("web"), "\(ignored.stderr)")
        #expect(ignored.stderr == "warning: ignoring SYSTEMD_LOG_LEVEL=loud: not a log level (emerg, alert, crit, err, warning, notice, info, debug (or 0-7), trace)\n")
    }

    // MARK: pull from a host that does not answer

    @Test func aPullFromAnUnreachableHostIsAConnectionFailureWithNothingLeft() throws {
        try Privileged.require(.root, .tool("unshare"))
        let pool = try Pool()
        // A network namespace of its own, loopback up, nothing listening on port 9.
        for (verify, url) in [("no", "http://127.0.0.1:9/image.raw"), ("checksum", "http://127.0.0.1:9/image.raw")] {
            let result = try Tool.run("unshare", ["--net", "--", "sh", "-c", "ip link set lo up 2>/dev/null; exec \"$0\" \"$@\"",
                                                  Imagectl.binary, "pull-raw", "--verify=\(verify)", url, "image"],
                                      environment: ["IMAGECTL_ROOT": pool.path])
            Self.expectError(result, status: 1, containing: ["connection failed", "127.0.0.1"], notContaining: ["resuming"])
            #expect(!result.stdout.contains("resuming") && !result.stdout.contains("interrupted"), "stdout: \(result.stdout)")
            #expect(pool.entries() == ["disk.raw", "web"], "left: \(pool.entries())")
        }
    }

    // MARK: --version

    @Test func versionSaysTheFeaturesThisSystemHas() throws {
        let result = try Imagectl.run(["--version"])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "imagectl 0.1.0")
        let flags = Set((lines.dropFirst().first ?? "").split(separator: " ").map(String.init))
        let misc = (try? String(contentsOfFile: "/proc/misc", encoding: .utf8)) ?? ""
        let deviceMapper = FileManager.default.fileExists(atPath: "/dev/mapper/control")
            && misc.split(separator: "\n").contains { $0.hasSuffix(" device-mapper") }
        #expect(flags.contains((deviceMapper ? "+" : "-") + "DEVICE_MAPPER"), "\(flags)")
        let curl = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL)
        #expect(flags.contains((curl != nil ? "+" : "-") + "CURL"), "\(flags)")
        if let curl { dlclose(curl) }
        let cryptsetup = dlopen("libcryptsetup.so.12", RTLD_NOW | RTLD_LOCAL)
        #expect(flags.contains((cryptsetup != nil ? "+" : "-") + "LIBCRYPTSETUP"), "\(flags)")
        if let cryptsetup { dlclose(cryptsetup) }
        #expect(flags.contains("+BTRFS") || flags.contains("-BTRFS"), "\(flags)")
        // Each missing feature is explained on a line of its own.
        for flag in flags where flag.hasPrefix("-") {
            #expect(lines.contains { $0.hasPrefix("  \(flag): ") }, "no reason for \(flag): \(result.stdout)")
        }
        #expect(try Imagectl.run(["--log-level=debug", "--version"]).stdout == result.stdout)
    }
}
