import Foundation
import Testing
import TestSupport

/// What a user sees from the long operations and the printing verbs: the progress bar on a
/// terminal (driven through util-linux `script`, a pty), the final line in a pipe, JSON lines,
/// silence with -q, and systemd's output options (--no-pager, --no-legend, -l/--full, -q,
/// --json=short|pretty|off) on every verb that prints.
@Suite(.serialized) struct OutputConventionsCLITests {
    /// A pool with a directory image "web", a sparse raw image "disk" and an image whose name is
    /// long enough to be ellipsized in a narrow terminal.
    static func makePool() throws -> (TemporaryDirectory, String) {
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-output")
        let pool = tmp.appending("pool")
        try FileManager.default.createDirectory(atPath: pool + "/web/etc", withIntermediateDirectories: true)
        try "ID=test\n".write(toFile: pool + "/web/etc/os-release", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: pool + "/a-rather-long-image-name-for-ellipsizing", withIntermediateDirectories: true)
        try sparseFile(pool + "/disk.raw", size: 16 << 20)
        return (tmp, pool)
    }

    /// A sparse disk image: an MBR with one Linux partition from 1 MiB on (so import-raw has no
    /// "not a disk image" warning to print), holes after it.
    static func sparseFile(_ path: String, size: UInt64) throws {
        var mbr = Data(count: 512)
        mbr[446 + 4] = 0x83
        let sectors = UInt32(size / 512 - 2048)
        for (offset, value) in [(446 + 8, UInt32(2048)), (446 + 12, sectors)] {
            for i in 0..<4 { mbr[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
        }
        mbr[510] = 0x55
        mbr[511] = 0xaa
        _ = FileManager.default.createFile(atPath: path, contents: mbr)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    static func quoted(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Runs `imagectl ARGS` on a pty `columns` wide (stty cols and $COLUMNS), standard output to
    /// /dev/null, so that what comes back is exactly what imagectl wrote to the terminal on
    /// standard error.
    static func onTerminal(_ arguments: [String], columns: Int, pool: String, stdoutToTerminal: Bool = false) throws -> Tool.Result {
        let command = ([Imagectl.binary] + arguments).map(quoted).joined(separator: " ")
        let shell = "stty cols \(columns) rows 24; export COLUMNS=\(columns) IMAGECTL_ROOT=\(quoted(pool)); exec \(command)"
            + (stdoutToTerminal ? "" : " >/dev/null")
        return try Tool.run("script", ["-q", "-e", "-f", "-O", "/dev/null", "-c", shell])
    }

    /// The pieces a terminal shows as separate lines: split at carriage returns and newlines,
    /// with the erase-to-end-of-line sequence taken out.
    static func terminalLines(_ text: String) -> [String] {
        // Split on UTF-16 units: for Swift's Character "\r\n" is one, neither "\r" nor "\n".
        text.replacingOccurrences(of: "\u{1B}[K", with: "")
            .components(separatedBy: CharacterSet(charactersIn: "\r\n")).filter { !$0.isEmpty }
    }

    // MARK: progress

    @Test("import-raw on a 60-column pty: a bar redrawn in place, no line ever wider than the terminal")
    func barFitsTerminal() throws {
        try Privileged.require(.tool("script"), .tool("stty"))
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let big = tmp.appending("big.raw")
        try Self.sparseFile(big, size: 384 << 20)
        for columns in [60, 80] {
            let name = "big\(columns)"
            let r = try Self.onTerminal(["import-raw", big, name], columns: columns, pool: pool)
            #expect(r.status == 0, "\(r.stdout)")
            #expect(r.stdout.contains("\r"), "no bar was drawn: \(r.stdout.debugDescription)")
            let lines = Self.terminalLines(r.stdout)
            #expect(lines.contains { $0.hasPrefix("import ") && $0.contains("%") }, "\(lines)")
            #expect(lines.contains { $0.hasPrefix("import: ") && $0.contains("384.0 MiB") }, "no final line: \(lines)")
            for line in lines {
                #expect(line.count < columns, "\(line.count) columns on a \(columns)-column terminal: '\(line)'")
            }
            #expect(FileManager.default.fileExists(atPath: "\(pool)/\(name).raw"))
        }
    }

    @Test("import-raw and import-tar into a pipe: only the final line and the result, never a carriage return")
    func pipedHasNoCarriageReturn() throws {
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let big = tmp.appending("big.raw")
        try Self.sparseFile(big, size: 64 << 20)
        let r = try Imagectl.run(["import-raw", big, "piped"], root: pool)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stdout.contains("\r") && !r.stderr.contains("\r"))
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(r.stdout)")
        #expect(lines.first?.hasPrefix("import: \(big) as raw (64.0 MiB in ") == true, "\(r.stdout)")
        #expect(lines.last == "Imported piped as \(pool)/piped.raw")

        let tarball = tmp.appending("web.tar")
        try #require(try Tool.run("tar", ["-C", pool + "/web", "-cf", tarball, "."]).status == 0)
        let tar = try Imagectl.run(["import-tar", tarball, "webcopy"], root: pool)
        #expect(tar.status == 0, "\(tar.stderr)")
        #expect(!tar.stdout.contains("\r") && tar.stderr.isEmpty)
        #expect(tar.stdout.split(separator: "\n").count == 2, "\(tar.stdout)")
    }

    @Test("--json: JSON lines ending in the result; -q: nothing at all")
    func jsonLinesAndQuiet() throws {
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let big = tmp.appending("big.raw")
        try Self.sparseFile(big, size: 32 << 20)
        let json = try Imagectl.run(["import-raw", "--json", big, "j"], root: pool)
        #expect(json.status == 0, "\(json.stderr)")
        let events = try json.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], "\($0)")
        }
        #expect(events.first?["event"] as? String == "begin")
        #expect(events.first?["total"] as? Int == 32 << 20)
        #expect(events.contains { $0["event"] as? String == "end" && $0["bytes"] as? Int == 32 << 20 })
        #expect(events.last?["event"] as? String == "done" && events.last?["name"] as? String == "j")

        let quiet = try Imagectl.run(["import-raw", "-q", big, "q"], root: pool)
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty, "\(quiet.stdout)\(quiet.stderr)")
        #expect(FileManager.default.fileExists(atPath: pool + "/q.raw"))

        // The other long operations: a final line each in a pipe, nothing with -q.
        let export = try Imagectl.run(["export-raw", "disk", tmp.appending("out.raw")], root: pool)
        #expect(export.status == 0 && export.stdout.hasPrefix("export: disk to "), "\(export.stdout)\(export.stderr)")
        let toStdout = try Imagectl.run(["export-raw", "disk", "-"], root: pool)
        #expect(toStdout.status == 0 && toStdout.stdoutData.count == 16 << 20, "the data alone on standard output")
        #expect(toStdout.stderr.hasPrefix("export: disk to -"), "\(toStdout.stderr)")
        let tar = try Imagectl.run(["export-tar", "-q", "web", tmp.appending("web.tar")], root: pool)
        #expect(tar.status == 0 && tar.stdout.isEmpty && tar.stderr.isEmpty, "\(tar.stdout)\(tar.stderr)")
        let clone = try Imagectl.run(["clone", "disk", "disk2"], root: pool)
        #expect(clone.status == 0 && clone.stdout.hasPrefix("clone: disk as disk2"), "\(clone.stdout)\(clone.stderr)")
    }

    @Test("export-raw and clone on a pty: bars that fit")
    func otherOperationsOnTerminal() throws {
        try Privileged.require(.tool("script"), .tool("stty"))
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        try Self.sparseFile(pool + "/large.raw", size: 256 << 20)
        // Data, not holes: a sparse export or copy would skip the holes at once.
        try #require(try Tool.run("dd", ["if=/dev/urandom", "of=\(pool)/large.raw", "bs=1M", "count=64", "conv=notrunc", "status=none"]).status == 0)
        for arguments in [["export-raw", "large", tmp.appending("large.raw.gz")], ["export-tar", "web", tmp.appending("web.tar")]] {
            let r = try Self.onTerminal(arguments, columns: 60, pool: pool)
            #expect(r.status == 0, "\(arguments): \(r.stdout)")
            let lines = Self.terminalLines(r.stdout)
            #expect(lines.contains { $0.hasPrefix("export: ") }, "\(lines)")
            for line in lines { #expect(line.count < 60, "'\(line)'") }
        }
        let gz = try Self.onTerminal(["export-raw", "large", tmp.appending("again.raw.gz")], columns: 60, pool: pool)
        #expect(Self.terminalLines(gz.stdout).contains { $0.hasPrefix("export ") && $0.contains("%") }, "\(gz.stdout.debugDescription)")
    }

    @Test("verify of 256 MiB on a pty: a bar while hashing, then the report alone; --json events on stderr")
    func verifyOnTerminal() throws {
        try Privileged.require(.tool("script"), .tool("stty"), .tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "imagectl-cli-verify-bar")
        let data = dir.appending("data.img")
        let hash = dir.appending("data.img.verity")
        try #require(try Tool.run("dd", ["if=/dev/urandom", "of=\(data)", "bs=1M", "count=256", "status=none"]).status == 0)
        let format = try Tool.run("veritysetup", ["format", data, hash])
        try #require(format.status == 0, "\(format.stderr)")
        let root = try #require(format.stdout.split(separator: "\n").first { $0.hasPrefix("Root hash:") }?
            .dropFirst("Root hash:".count).trimmingCharacters(in: .whitespaces))
        let arguments = ["verify", data, "--verity-data=\(hash)", "--root-hash=\(root)"]
        let r = try Self.onTerminal(arguments, columns: 60, pool: dir.path)
        #expect(r.status == 0, "\(r.stdout)")
        let lines = Self.terminalLines(r.stdout)
        #expect(lines.contains { $0.hasPrefix("verify ") && $0.contains("%") }, "\(lines)")
        for line in lines { #expect(line.count < 60, "'\(line)'") }
        // In a pipe: the report only, no bar, nothing on standard error.
        let piped = try Imagectl.run(arguments)
        #expect(piped.status == 0 && piped.stderr.isEmpty && !piped.stdout.contains("\r"), "\(piped.stderr)")
        #expect(piped.stdout.hasPrefix("data: verified"), "\(piped.stdout)")
        let json = try Imagectl.run(arguments + ["--json=short"])
        #expect((try? JSONSerialization.jsonObject(with: json.stdoutData)) as? [Any] != nil, "stdout is the results: \(json.stdout)")
        let events = json.stderr.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        #expect(events.first?["event"] as? String == "begin" && events.last?["event"] as? String == "end", "\(json.stderr)")
        #expect(events.count == json.stderr.split(separator: "\n").count)
    }

    @Test("pull-raw of a file:// URL on a pty: the download bar fits; piped, the phases' final lines")
    func pullOnTerminal() throws {
        try Privileged.require(.tool("script"), .tool("stty"))
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let big = tmp.appending("pulled.raw")
        try Self.sparseFile(big, size: 256 << 20)
        let r = try Self.onTerminal(["pull-raw", "--verify=no", "file://\(big)", "p1"], columns: 60, pool: pool)
        #expect(r.status == 0, "\(r.stdout)")
        let lines = Self.terminalLines(r.stdout)
        #expect(lines.contains { $0.hasPrefix("download ") && $0.contains("%") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("download: ") }, "\(lines)")
        for line in lines { #expect(line.count < 60, "'\(line)'") }
        let piped = try Imagectl.run(["pull-raw", "--verify=no", "file://\(big)", "p2"], root: pool)
        #expect(piped.status == 0 && piped.stderr.isEmpty && !piped.stdout.contains("\r"), "\(piped.stdout)\(piped.stderr)")
        #expect(piped.stdout.split(separator: "\n").allSatisfy { $0.contains(": ") || $0.hasPrefix("Pulled p2 as") }, "\(piped.stdout)")
    }

    @Test("import-fs of a Debian tree on a pty: cp's reads drive a bar that fits")
    func importFsOnTerminal() throws {
        try Privileged.require(.root, .tool("script"), .tool("stty"), .fixture("debian-tree"))
        let tree = try #require(Fixtures.path("debian-tree"))
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let r = try Self.onTerminal(["import-fs", tree, "deb"], columns: 60, pool: pool)
        #expect(r.status == 0, "\(r.stdout)")
        let lines = Self.terminalLines(r.stdout)
        #expect(lines.contains { $0.hasPrefix("import ") && $0.contains("%") }, "\(lines)")
        #expect(lines.last?.hasPrefix("import: ") == true, "\(lines)")
        for line in lines { #expect(line.count < 60, "'\(line)'") }
    }

    // MARK: systemd's output options

    /// Each printing verb with each convention flag: accepted (the verb's own outcome, never a
    /// usage error).
    @Test("--no-pager, --no-legend, -l, --full, -q, --json[=short|pretty|off] on every printing verb")
    func everyFlagOnEveryVerb() throws {
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let runtime = tmp.appending("runtime")
        let sample = tmp.appending("sample.raw")
        try Self.sparseFile(sample, size: 1 << 20)
        var counter = 0
        // (arguments, expected status): the expected status is the verb's own.
        let verbs: [([String], Int32)] = [
            (["list"], 0), (["show", "web"], 0), (["machines"], 0), (["status", "nosuchmachine"], 1),
            (["dissect", pool + "/web"], 0), (["validate", pool + "/web"], 0),
            (["verify", pool + "/web"], 1), (["mount", pool + "/web", tmp.appending("mnt")], 1),
            (["clean", "--dry-run"], 0), (["read-only", "web"], 0),
            (["import-raw", sample, "NAME"], 0), (["import-tar", "/nonexistent.tar", "NAME"], 1),
            (["import-fs", pool + "/web", "NAME"], 0),
            (["export-raw", "disk", "OUT"], 0), (["export-tar", "web", "OUT"], 0), (["clone", "web", "NAME"], 0),
            (["pull-raw", "--verify=no", "file:///nonexistent.raw", "NAME"], 1),
        ]
        let flags = ["--no-pager", "--no-legend", "-l", "--full", "-q", "--json", "--json=short", "--json=pretty", "--json=off"]
        for (arguments, expected) in verbs {
            for flag in flags {
                counter += 1
                let concrete = arguments.map { $0 == "NAME" ? "n\(counter)" : $0 == "OUT" ? tmp.appending("out\(counter)") : $0 }
                let r = try Imagectl.run(Array(concrete.prefix(1)) + [flag] + concrete.dropFirst(), root: pool,
                                         environment: ["IMAGECTL_RUNTIME_DIR": runtime])
                #expect(r.status == expected, "\(concrete) \(flag): \(r.status) \(r.stderr)")
                #expect(!r.stderr.contains("Unknown option") && !r.stderr.contains("Usage:"), "\(concrete) \(flag): \(r.stderr)")
                if expected == 0 && flag.hasPrefix("--json") && flag != "--json=off" && arguments.first != "import-raw"
                    && arguments.first != "import-fs" && !arguments.first!.hasPrefix("export") {
                    #expect((try? JSONSerialization.jsonObject(with: r.stdoutData)) != nil, "\(concrete) \(flag): \(r.stdout)")
                }
                if flag == "--json=short" && expected == 0 {
                    #expect(r.stdout.split(separator: "\n").allSatisfy {
                        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil
                    }, "\(concrete): one JSON value per line: \(r.stdout)")
                }
            }
        }
        // vm --firmware=list takes them too (it needs QEMU's descriptors to list anything).
        if Privileged.has(.tool("qemu-system-x86_64")) {
            for flag in flags where flag != "-q" {
                let r = try Imagectl.run(["vm", "--firmware=list", flag])
                #expect(r.status == 0, "vm --firmware=list \(flag): \(r.stderr)")
            }
            let json = try Imagectl.run(["vm", "--firmware=list", "--json=short"])
            let rows = try #require(try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]])
            #expect(rows.allSatisfy { Set($0.keys) == ["path", "description"] }, "\(json.stdout)")
            let table = try Imagectl.run(["vm", "--firmware=list"])
            #expect(table.stdout.hasPrefix("PATH"), "\(table.stdout)")
            #expect(!(try Imagectl.run(["vm", "--firmware=list", "--no-legend"]).stdout.contains("PATH")))
        }
    }

    @Test("list: keys are the columns as machinectl names them; --no-legend; --json forms; empty lists")
    func listConventions() throws {
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let short = try Imagectl.run(["list", "--json=short"], root: pool)
        #expect(short.status == 0)
        #expect(short.stdout.split(separator: "\n").count == 1, "\(short.stdout)")
        let rows = try #require(try JSONSerialization.jsonObject(with: short.stdoutData) as? [[String: Any]])
        #expect(rows.allSatisfy { Set($0.keys) == ["name", "type", "ro", "usage", "created", "modified"] }, "\(rows)")
        let disk = try #require(rows.first { $0["name"] as? String == "disk" })
        #expect(disk["type"] as? String == "raw" && disk["ro"] as? Bool == false)
        let modified = try #require(disk["modified"] as? Double)
        #expect(abs(modified / 1e6 - Date().timeIntervalSince1970) < 3600, "microseconds since the epoch: \(modified)")

        let pretty = try Imagectl.run(["list", "--json=pretty"], root: pool)
        #expect(try Imagectl.run(["list", "--json"], root: pool).stdout == pretty.stdout, "a bare --json is pretty")
        #expect(pretty.stdout.split(separator: "\n").count > 3)
        #expect(try Imagectl.run(["list", "--json=off"], root: pool).stdout == (try Imagectl.run(["list"], root: pool)).stdout)

        let table = try Imagectl.run(["list"], root: pool)
        #expect(table.stdout.hasPrefix("NAME") && table.stdout.hasSuffix("\n3 images listed.\n"), "\(table.stdout)")
        let bare = try Imagectl.run(["list", "--no-legend"], root: pool)
        #expect(bare.stdout.split(separator: "\n").count == 3, "\(bare.stdout)")
        #expect(!bare.stdout.contains("NAME") && !bare.stdout.contains("listed"), "\(bare.stdout)")
        #expect(try Imagectl.run(["list", "-q"], root: pool).stdout == table.stdout, "-q hides no data")

        let empty = tmp.appending("empty")
        #expect(try Imagectl.run(["list", "--json"], root: empty).stdout == "[]\n")
        #expect(try Imagectl.run(["list", "--json=short"], root: empty).stdout == "[]\n")
        #expect(try Imagectl.run(["list"], root: empty).stdout == "No images.\n")
        #expect(try Imagectl.run(["list", "--no-legend"], root: empty).stdout == "")

        let runtime = ["IMAGECTL_RUNTIME_DIR": tmp.appending("runtime")]
        #expect(try Imagectl.run(["machines", "--json"], environment: runtime).stdout == "[]\n")
        #expect(try Imagectl.run(["machines"], environment: runtime).stdout == "No machines.\n")
        #expect(try Imagectl.run(["machines", "--no-legend"], environment: runtime).stdout == "")
    }

    @Test("-l/--full: on a narrow terminal cells are ellipsized, with --full they are not")
    func fullOnTerminal() throws {
        try Privileged.require(.tool("script"), .tool("stty"))
        let (tmp, pool) = try Self.makePool()
        defer { withExtendedLifetime(tmp) {} }
        let narrow = try Self.onTerminal(["list"], columns: 60, pool: pool, stdoutToTerminal: true)
        #expect(narrow.status == 0)
        let lines = Self.terminalLines(narrow.stdout)
        #expect(lines.contains { $0.contains("…") }, "\(lines)")
        #expect(!narrow.stdout.contains("a-rather-long-image-name-for-ellipsizing"))
        for line in lines { #expect(line.count < 60, "'\(line)'") }
        for flag in ["-l", "--full"] {
            let full = try Self.onTerminal(["list", flag], columns: 60, pool: pool, stdoutToTerminal: true)
            #expect(full.stdout.contains("a-rather-long-image-name-for-ellipsizing"), "\(full.stdout)")
            #expect(!full.stdout.contains("…"))
        }
        // A pipe is never ellipsized.
        #expect(try Imagectl.run(["list"], root: pool, environment: ["COLUMNS": "60"]).stdout.contains("a-rather-long-image-name-for-ellipsizing"))
    }

    @Test("dissect --json=short: one line with systemd-dissect's keys")
    func dissectShortMatchesSystemd() throws {
        try Privileged.require(.root, .loopDevices, .tool("systemd-dissect"), .tool("sfdisk"), .tool("mkfs.ext4"))
        let dir = try TemporaryDirectory(prefix: "imagectl-cli-dissect-short")
        let path = dir.appending("gpt.raw")
        let fs = dir.appending("root.ext4")
        try Self.sparseFile(path, size: 20 << 20)
        try Self.sparseFile(fs, size: 16 << 20)
        try #require(try Tool.run("mkfs.ext4", ["-q", "-L", "root", fs]).status == 0)
        let script = dir.appending("sfdisk.txt")
        try "label: gpt\nstart=2048, size=32768, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root-x86-64\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        try #require(try Tool.run("sfdisk", ["-q", path], stdin: script).status == 0)
        try #require(try Tool.run("dd", ["if=\(fs)", "of=\(path)", "bs=1M", "seek=1", "conv=notrunc", "status=none"]).status == 0)

        let ours = try Imagectl.run(["dissect", "--json=short", path])
        #expect(ours.status == 0, "\(ours.stderr)")
        #expect(ours.stdout.split(separator: "\n").count == 1, "short is one line: \(ours.stdout)")
        let peer = try Tool.run("systemd-dissect", ["--json=short", path])
        try #require(peer.status == 0, "systemd-dissect: \(peer.stderr)")
        let mine = try #require(try JSONSerialization.jsonObject(with: ours.stdoutData) as? [String: Any])
        let theirs = try #require(try JSONSerialization.jsonObject(with: peer.stdoutData) as? [String: Any])
        // Every key systemd-dissect prints that imagectl can know (not its image-policy and
        // device node fields) is there, spelled the same.
        let systemdOnly: Set<String> = ["imagePolicy", "imagePolicyMount"]
        for key in theirs.keys where !systemdOnly.contains(key) {
            #expect(mine.keys.contains(key), "key \(key) missing: \(mine.keys.sorted())")
        }
        let myMounts = try #require(mine["mounts"] as? [[String: Any]])
        let theirMounts = try #require(theirs["mounts"] as? [[String: Any]])
        #expect(myMounts.count == theirMounts.count)
        for (m, t) in zip(myMounts, theirMounts) {
            for key in t.keys { #expect(m.keys.contains(key), "mount key \(key)") }
            #expect(m["designator"] as? String == t["designator"] as? String)
        }
        let pretty = try Imagectl.run(["dissect", "--json", path])
        #expect(pretty.stdout.split(separator: "\n").count > 10, "bare --json is pretty")
    }
}
