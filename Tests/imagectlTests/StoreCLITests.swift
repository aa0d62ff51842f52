import Foundation
import Testing
import TestSupport

/// Every store verb through the CLI, against a temporary pool (IMAGECTL_ROOT).
@Suite struct StoreCLITests {
    /// A pool with a directory image "web" (with a side file) and a sparse raw image "disk".
    func makePool() throws -> (TemporaryDirectory, String) {
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-store")
        let pool = tmp.appending("pool")
        try FileManager.default.createDirectory(atPath: pool + "/web/etc", withIntermediateDirectories: true)
        try "ID=test\n".write(toFile: pool + "/web/etc/os-release", atomically: false, encoding: .utf8)
        try "[Exec]\nBoot=yes\n".write(toFile: pool + "/web.nspawn", atomically: false, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: pool + "/disk.raw", contents: Data("raw!".utf8))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: pool + "/disk.raw"))
        try handle.truncate(atOffset: 16 << 20)
        try handle.close()
        return (tmp, pool)
    }

    /// One `error:` line on stderr and the given status.
    func expectError(_ result: Tool.Result, status: Int32 = 1, containing text: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == status, "status \(result.status), stderr \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        if let text { #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation) }
    }

    @Test func listTableAndJSON() throws {
        let (tmp, pool) = try makePool()
        try FileManager.default.createDirectory(atPath: pool + "/.secret", withIntermediateDirectories: true)
        let table = try Imagectl.run(["list"], root: pool)
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first?.hasPrefix("NAME") == true)
        for column in ["TYPE", "RO", "USAGE", "CREATED", "MODIFIED"] { #expect(lines.first?.contains(column) == true) }
        #expect(table.stdout.contains("disk") && table.stdout.contains("raw"))
        #expect(table.stdout.contains("web") && table.stdout.contains("directory"))
        #expect(!table.stdout.contains(".secret"))
        #expect(table.stdout.hasSuffix("\n2 images listed.\n"))

        let all = try Imagectl.run(["list", "--all"], root: pool)
        #expect(all.stdout.contains(".secret") && all.stdout.hasSuffix("3 images listed.\n"))

        let json = try Imagectl.run(["list", "--json"], root: pool)
        #expect(json.status == 0)
        let array = try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]]
        #expect(array?.compactMap { $0["name"] as? String } == ["disk", "web"])
        let disk = array?.first
        #expect(disk?["type"] as? String == "raw")
        #expect(disk?["ro"] as? Bool == false)
        #expect((disk?["usage"] as? Int ?? Int.max) < 1 << 20)
        withExtendedLifetime(tmp) {}
    }

    @Test func listEmptyPool() throws {
        let tmp = try TemporaryDirectory()
        let result = try Imagectl.run(["list"], root: tmp.appending("empty"))
        #expect(result.status == 0)
        #expect(result.stdout == "No images.\n")
        let json = try Imagectl.run(["list", "--json"], root: tmp.appending("empty"))
        #expect((try JSONSerialization.jsonObject(with: json.stdoutData) as? [Any])?.isEmpty == true)
    }

    @Test func showTextAndJSON() throws {
        let (tmp, pool) = try makePool()
        let hash = String(repeating: "0f", count: 32)
        try "\(hash)\n".write(toFile: pool + "/disk.roothash", atomically: false, encoding: .utf8)
        let text = try Imagectl.run(["show", "disk"], root: pool)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("Path: \(pool)/disk.raw"))
        #expect(text.stdout.contains("Type: raw"))
        #expect(text.stdout.contains("Root hash: \(hash)"))
        #expect(text.stdout.contains("Locked: no"))

        let json = try Imagectl.run(["show", "web", "--json"], root: pool)
        let object = try JSONSerialization.jsonObject(with: json.stdoutData) as? [String: Any]
        #expect(object?["name"] as? String == "web")
        #expect(object?["sideFiles"] as? [String] == [pool + "/web.nspawn"])
        #expect(object?["locked"] as? Bool == false)
        #expect(object?["verity"] is [String: Any])
        withExtendedLifetime(tmp) {}
    }

    @Test func cloneRenameRemove() throws {
        let (tmp, pool) = try makePool()
        #expect(try Imagectl.run(["clone", "web", "web2"], root: pool).status == 0)
        #expect(FileManager.default.fileExists(atPath: pool + "/web2/etc/os-release"))
        #expect(FileManager.default.fileExists(atPath: pool + "/web2.nspawn"))
        #expect(try Imagectl.run(["clone", "disk", "disk-ro", "--read-only"], root: pool).status == 0)
        #expect(try Imagectl.run(["read-only", "disk-ro"], root: pool).stdout == "yes\n")

        #expect(try Imagectl.run(["rename", "web2", "web3"], root: pool).status == 0)
        #expect(!FileManager.default.fileExists(atPath: pool + "/web2"))
        #expect(FileManager.default.fileExists(atPath: pool + "/web3.nspawn"))

        #expect(try Imagectl.run(["remove", "web3", "disk-ro"], root: pool).status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).sorted() == ["disk.raw", "web", "web.nspawn"])
        withExtendedLifetime(tmp) {}
    }

    @Test func readOnlyVerb() throws {
        let (tmp, pool) = try makePool()
        #expect(try Imagectl.run(["read-only", "disk"], root: pool).stdout == "no\n")
        #expect(try Imagectl.run(["read-only", "disk", "yes"], root: pool).status == 0)
        #expect(try Imagectl.run(["read-only", "disk"], root: pool).stdout == "yes\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: pool + "/disk.raw")
        #expect(((attributes[.posixPermissions] as? Int) ?? 0o777) & 0o222 == 0)
        let json = try Imagectl.run(["read-only", "disk", "--json"], root: pool)
        #expect((try JSONSerialization.jsonObject(with: json.stdoutData) as? [String: Any])?["readOnly"] as? Bool == true)
        #expect(try Imagectl.run(["read-only", "disk", "no"], root: pool).status == 0)
        #expect(try Imagectl.run(["read-only", "disk"], root: pool).stdout == "no\n")
        expectError(try Imagectl.run(["read-only", "disk", "maybe"], root: pool), status: 2, containing: "yes or no")
        withExtendedLifetime(tmp) {}
    }

    @Test func setLimitVerb() throws {
        let (tmp, pool) = try makePool()
        // Not btrfs here: a clear error, not a silent success.
        expectError(try Imagectl.run(["set-limit", "web", "10G"], root: pool), containing: "btrfs")
        expectError(try Imagectl.run(["set-limit", "web", "ten"], root: pool), status: 2, containing: "invalid size")
        expectError(try Imagectl.run(["set-limit", "nope", "1G"], root: pool), containing: "no image named 'nope'")
        withExtendedLifetime(tmp) {}
    }

    @Test func cleanVerb() throws {
        let (tmp, pool) = try makePool()
        try FileManager.default.createDirectory(atPath: pool + "/.#web.0123456789abcdef.tmp/x", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: pool + "/.hidden", withIntermediateDirectories: true)
        let dry = try Imagectl.run(["clean", "--all", "--dry-run"], root: pool)
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("Would remove temporary \(pool)/.#web.0123456789abcdef.tmp"))
        #expect(dry.stdout.contains("Would remove hidden image \(pool)/.hidden"))
        #expect(FileManager.default.fileExists(atPath: pool + "/.#web.0123456789abcdef.tmp"))
        let json = try Imagectl.run(["clean", "--json"], root: pool)
        let entries = try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]]
        #expect(entries?.compactMap { $0["kind"] as? String } == ["temporary"])
        #expect(FileManager.default.fileExists(atPath: pool + "/.hidden"))
        #expect(try Imagectl.run(["clean", "--all"], root: pool).stdout.contains("Removed hidden image"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).sorted() == ["disk.raw", "web", "web.nspawn"])
        withExtendedLifetime(tmp) {}
    }

    @Test func exportVerbs() throws {
        let (tmp, pool) = try makePool()
        let tarball = tmp.appending("web.tar.zst")
        #expect(try Imagectl.run(["export-tar", "web", tarball], root: pool).status == 0)
        let listing = try Tool.run("tar", ["--zstd", "-tf", tarball]).stdout
        #expect(listing.contains("./etc/os-release"))
        let raw = tmp.appending("disk.raw.gz")
        #expect(try Imagectl.run(["export-raw", "disk", raw], root: pool).status == 0)
        #expect(try Tool.run("sh", ["-c", "gzip -dc '\(raw)' | cmp - '\(pool)/disk.raw'"]).status == 0)
        // --format overrides the suffix.
        let forced = tmp.appending("disk.bin")
        #expect(try Imagectl.run(["export-raw", "disk", forced, "--format", "xz"], root: pool).status == 0)
        #expect(try Tool.run("xz", ["-t", forced]).status == 0)
        expectError(try Imagectl.run(["export-raw", "disk", forced], root: pool), containing: "already exists")
        expectError(try Imagectl.run(["export-tar", "disk", tmp.appending("d.tar")], root: pool), containing: "export-tar needs a directory")
        expectError(try Imagectl.run(["export-raw", "disk", tmp.appending("x"), "--format", "lz4"], root: pool), status: 2)
        withExtendedLifetime(tmp) {}
    }

    @Test func unknownImageIsOneErrorLineForEveryVerb() throws {
        let (tmp, pool) = try makePool()
        let commands: [[String]] = [
            ["show", "nope"], ["clone", "nope", "x"], ["rename", "nope", "x"], ["remove", "nope"],
            ["read-only", "nope"], ["read-only", "nope", "yes"], ["set-limit", "nope", "1G"],
            ["export-tar", "nope", tmp.appending("n.tar")], ["export-raw", "nope", tmp.appending("n.raw")],
        ]
        for command in commands {
            expectError(try Imagectl.run(command, root: pool), containing: "no image named 'nope'")
        }
        // Nothing was created by the failures.
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).sorted() == ["disk.raw", "web", "web.nspawn"])
        #expect(!FileManager.default.fileExists(atPath: tmp.appending("n.tar")))
    }

    @Test func badNamesAndExistingTargets() throws {
        let (tmp, pool) = try makePool()
        // An invalid name is a bad argument: exit 2, whichever verb finds it.
        expectError(try Imagectl.run(["clone", "web", "a/b"], root: pool), status: 2, containing: "'/'")
        expectError(try Imagectl.run(["clone", "web", ".#x"], root: pool), status: 2, containing: ".#")
        // Names that would alias another image's files (issue 16).
        expectError(try Imagectl.run(["clone", "web", "web2.raw"], root: pool), status: 2, containing: "ends in '.raw'")
        expectError(try Imagectl.run(["rename", "web", "disk.nspawn"], root: pool), status: 2, containing: "ends in '.nspawn'")
        expectError(try Imagectl.run(["clone", "web", "disk"], root: pool), containing: "already exists")
        expectError(try Imagectl.run(["rename", "web", "disk"], root: pool), containing: "already exists")
        expectError(try Imagectl.run(["remove"], root: pool), status: 2)
        expectError(try Imagectl.run(["show", "../etc"], root: pool), status: 2, containing: "'/'")
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).filter { !$0.hasSuffix(".lck") }.sorted() == ["disk.raw", "web", "web.nspawn"])
        withExtendedLifetime(tmp) {}
    }

    @Test func busyImageExits16() throws {
        try Privileged.require(.tool("python3"))
        let (tmp, pool) = try makePool()
        let holder = try LockHolder(path: pool + "/.#web.lck")
        defer { holder.stop() }
        for command in [["remove", "web"], ["rename", "web", "other"], ["read-only", "web", "yes"]] {
            expectError(try Imagectl.run(command, root: pool), status: 16, containing: "busy")
        }
        let show = try Imagectl.run(["show", "web"], root: pool)
        #expect(show.stdout.contains("Locked: yes (pid \(holder.pid))"))
        holder.stop()
        #expect(try Imagectl.run(["remove", "web"], root: pool).status == 0)
        withExtendedLifetime(tmp) {}
    }

    @Test func everyVerbHasHelp() throws {
        for verb in ["list", "show", "clone", "rename", "remove", "read-only", "set-limit", "clean", "export-tar", "export-raw"] {
            let result = try Imagectl.run([verb, "--help"])
            #expect(result.status == 0, "\(verb) --help")
            #expect(result.stdout.contains("--root"), "\(verb) --help lacks --root")
        }
    }
}

/// SECURITY.md 11: a clone killed at any point leaves no image under the final name (or a complete
/// one), and `clean` removes every leftover.
@Suite struct StoreCrashSafetyTests {
    @Test func cloneKilledAtRandomPointsLeavesNothingHalfDone() throws {
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-kill")
        let pool = tmp.appending("pool")
        let source = pool + "/big"
        for d in 0..<20 {
            try FileManager.default.createDirectory(atPath: "\(source)/d\(d)", withIntermediateDirectories: true)
            for f in 0..<150 {
                _ = FileManager.default.createFile(atPath: "\(source)/d\(d)/f\(f)", contents: Data(repeating: UInt8(f & 0xff), count: 4096))
            }
        }
        let expectedFiles = 20 * 150
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Imagectl.binary)
            process.arguments = ["clone", "big", "copy"]
            process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": pool]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32.random(in: 20_000...400_000, using: &generator))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()

            // Either no image "copy", or a complete one.
            let list = try Imagectl.run(["list", "--json"], root: pool)
            let names = (try JSONSerialization.jsonObject(with: list.stdoutData) as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
            if names.contains("copy") {
                let files = FileManager.default.enumerator(atPath: pool + "/copy")?.allObjects.count ?? 0
                #expect(files == expectedFiles + 20, "round \(round): partial image under the final name")
                #expect(try Imagectl.run(["remove", "copy"], root: pool).status == 0)
            }
            // The killed process held no lock any more: clean removes its leftovers.
            #expect(try Imagectl.run(["clean"], root: pool).status == 0)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: pool).filter { $0.hasPrefix(".#") }
            #expect(leftovers.isEmpty, "round \(round): \(leftovers)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).sorted() == ["big"])
    }

    /// A tree of `20 * 150` small files under `path`.
    static func makeBigTree(_ path: String) throws {
        for d in 0..<20 {
            try FileManager.default.createDirectory(atPath: "\(path)/d\(d)", withIntermediateDirectories: true)
            for f in 0..<150 {
                _ = FileManager.default.createFile(atPath: "\(path)/d\(d)/f\(f)", contents: Data(repeating: UInt8(f & 0xff), count: 4096))
            }
        }
    }

    static func listedNames(_ pool: String) throws -> [String] {
        let list = try Imagectl.run(["list", "--all", "--json"], root: pool)
        return (try JSONSerialization.jsonObject(with: list.stdoutData) as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
    }

    /// Runs imagectl with `arguments` and kills it with SIGKILL after a random delay.
    static func runKilled(_ arguments: [String], pool: String, upTo microseconds: UInt32, generator: inout SystemRandomNumberGenerator) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": pool]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        usleep(UInt32.random(in: 5_000...microseconds, using: &generator))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    @Test("remove killed at random points: the image is listed whole (with its side file) or not at all; clean leaves nothing")
    func removeKilledAtRandomPoints() throws {
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-kill-remove")
        let pool = tmp.appending("pool")
        var generator = SystemRandomNumberGenerator()
        var gone = 0
        for round in 0..<6 {
            if !FileManager.default.fileExists(atPath: pool + "/big") {
                try Self.makeBigTree(pool + "/big")
                try "[Exec]\n".write(toFile: pool + "/big.nspawn", atomically: false, encoding: .utf8)
            }
            try Self.runKilled(["remove", "big"], pool: pool, upTo: 300_000, generator: &generator)
            if try Self.listedNames(pool).contains("big") {
                let files = FileManager.default.enumerator(atPath: pool + "/big")?.allObjects.count ?? 0
                #expect(files == 20 * 150 + 20, "round \(round): a partial image is listed")
                #expect(FileManager.default.fileExists(atPath: pool + "/big.nspawn"), "round \(round): listed without its side file")
            } else {
                gone += 1
                #expect(try Imagectl.run(["clean"], root: pool).status == 0)
                let left = try FileManager.default.contentsOfDirectory(atPath: pool).filter { !$0.hasSuffix(".lck") }
                #expect(left.isEmpty, "round \(round): \(left)")
            }
        }
        #expect(gone > 0, "no kill landed after the remove began")
    }

    @Test("export-tar killed at random points leaves nothing beside the output but a complete file")
    func exportKilledLeavesNothing() throws {
        try Privileged.require(.tool("tar"))
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-kill-export")
        let pool = tmp.appending("pool")
        try Self.makeBigTree(pool + "/big")
        let out = tmp.appending("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4 {
            try Self.runKilled(["export-tar", "big", out + "/big.tar.xz"], pool: pool, upTo: 600_000, generator: &generator)
            let entries = try FileManager.default.contentsOfDirectory(atPath: out)
            #expect(entries.isEmpty || entries == ["big.tar.xz"], "round \(round): \(entries)")
            if entries == ["big.tar.xz"] {
                let listing = try Tool.run("tar", ["-tJf", out + "/big.tar.xz"])
                #expect(listing.status == 0 && listing.stdout.split(separator: "\n").count >= 20 * 150, "round \(round): incomplete output")
                try FileManager.default.removeItem(atPath: out + "/big.tar.xz")
            }
        }
    }

    @Test func cloneOnAFullFilesystemFailsCleanly() throws {
        try Privileged.require(.root)
        let tmp = try TemporaryDirectory(prefix: "imagectl-cli-enospc")
        let pool = tmp.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        let mount = try Tool.run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", pool])
        try #require(mount.status == 0, "mount tmpfs: \(mount.stderr)")
        defer { _ = try? Tool.run("umount", [pool]) }
        try FileManager.default.createDirectory(atPath: pool + "/data", withIntermediateDirectories: true)
        try Data(repeating: 7, count: 3 << 20).write(to: URL(fileURLWithPath: pool + "/data/blob"))

        let result = try Imagectl.run(["clone", "data", "copy"], root: pool)
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains("No space left on device"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: pool).sorted() == ["data"])
    }
}
