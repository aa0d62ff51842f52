import Foundation
import Testing
import TestSupport

/// pull-raw and pull-tar as a user runs them, against fixtures/test-http-server.py on 127.0.0.1.
@Suite("pull CLI", .serialized)
struct PullCLITests {
    struct Failure: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }

    @discardableResult
    static func sh(_ command: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw Failure(text: "\(command): \(result.stderr)") }
        return result.stdout
    }

    /// The test server, stopped when the value goes away.
    final class Server: @unchecked Sendable {
        // Immutable after init; deinit only terminates the process.
        let process = Process()
        let port: Int
        let log: String

        init(directory: String, log: String, arguments: [String] = [], port: Int = 0) throws {
            self.log = log
            process.executableURL = URL(fileURLWithPath: Tool.path("python3") ?? "/usr/bin/python3")
            process.arguments = [Fixtures.repositoryPath("test-http-server.py"), "--dir", directory, "--log", log,
                                 "--port", "\(port)"] + arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)) else {
                kill(process.processIdentifier, SIGKILL)
                throw Failure(text: "test server did not start: \(text)")
            }
            self.port = port
        }

        func url(_ file: String, scheme: String = "http") -> String { "\(scheme)://127.0.0.1:\(port)/\(file)" }

        /// The requests logged so far, as dictionaries.
        func requests() -> [[String: Any]] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }

        func stop() {
            // SIGKILL: the test process may run with SIGTERM blocked, which the child inherits.
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }

        deinit { stop() }
    }

    /// A served directory, a pool, and (made on demand) gpg keys.
    final class Box: @unchecked Sendable {
        // Immutable after init apart from files on disk.
        let dir: TemporaryDirectory
        var pool: String { dir.appending("pool") }
        var srv: String { dir.appending("srv") }
        var keyring: String { dir.appending("keyring.gpg") }
        init() throws {
            dir = try TemporaryDirectory(prefix: "imagectl-pull-cli")
            try sh("mkdir -p \(dir.appending("srv")) \(dir.appending("pool"))")
        }
        func path(_ name: String) -> String { dir.appending(name) }

        /// Copies fixtures into the served directory and writes SHA256SUMS for them.
        func serve(_ fixtures: [String], sums: Bool = true) throws {
            for name in fixtures {
                guard let source = Fixtures.path(name) else { throw Failure(text: "fixture \(name) missing") }
                try sh("cp \(source) \(srv)/\(name)")
            }
            if sums { try sh("cd \(srv) && sha256sum \(fixtures.joined(separator: " ")) > SHA256SUMS") }
        }

        /// A throw-away signing key in its own GNUPGHOME; the trusted keyring holds only "trusted".
        func makeKey(_ name: String) throws -> String {
            let home = path("gnupg-\(name)")
            try sh("mkdir -m 700 -p \(home) && GNUPGHOME=\(home) gpg --batch --quiet --passphrase '' --quick-gen-key 'imagectl \(name) <\(name)@example.org>' ed25519 sign never 2>&1")
            return home
        }

        func trust(_ home: String) throws {
            try sh("GNUPGHOME=\(home) gpg --batch --quiet --export > \(keyring)")
        }

        func sign(_ file: String, with home: String, as signature: String) throws {
            try sh("GNUPGHOME=\(home) gpg --batch --quiet --yes --detach-sign -o \(srv)/\(signature) \(srv)/\(file) 2>&1")
        }

        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: pool)) ?? []).sorted()
        }
    }

    static func expectOneErrorLine(_ result: Tool.Result, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 1, "exit status \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("error: ") == true, sourceLocation: sourceLocation)
        #expect(result.stderr.lowercased().contains(text.lowercased()), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    }

    /// No image of that name in the pool: neither the file/directory nor a listing entry.
    static func expectNoImage(_ box: Box, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(!FileManager.default.fileExists(atPath: "\(box.pool)/\(name).raw"), sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: "\(box.pool)/\(name)"), sourceLocation: sourceLocation)
        let list = try Imagectl.run(["list", "--all"], root: box.pool)
        #expect(!list.stdout.split(separator: "\n").contains { $0.split(separator: " ").first.map(String.init) == name },
                "list: \(list.stdout)", sourceLocation: sourceLocation)
    }

    /// Everything about a tree that an import keeps: paths, types, modes, owners, sizes, mtimes,
    /// link targets, xattrs (the top directory's own xattrs left out: a pull records its URL there).
    static func treeListing(_ root: String) throws -> String {
        let entries = try sh("cd \(root) && find . -mindepth 1 -printf '%p %y %m %U %G %s %T@ %l\\n' | sort")
        let xattrs = try sh("cd \(root) && find . -mindepth 1 -print0 | sort -z | xargs -0 getfattr -h -d -m - --absolute-names 2>/dev/null || true")
        return entries + xattrs
    }

    // MARK: - the happy paths

    @Test("pull-raw --verify=checksum of multiblock.raw.xz equals import-raw; provenance, ETag xattr, mtime from Last-Modified")
    func rawWithChecksum() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz"])
        let server = try Server(directory: box.srv, log: box.path("log"))
        let pulled = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("multiblock.raw.xz")], root: box.pool)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect(pulled.stdout.contains("Pulled multiblock as"))
        let imported = try Imagectl.run(["import-raw", "\(box.srv)/multiblock.raw.xz", "imported"], root: box.pool)
        #expect(imported.status == 0, "\(imported.stderr)")
        try Self.sh("cmp \(box.pool)/multiblock.raw \(box.pool)/imported.raw")
        let attrs = try Self.sh("getfattr -d --absolute-names \(box.pool)/multiblock.raw")
        #expect(attrs.contains("user.source_url=\"\(server.url("multiblock.raw.xz"))\""))
        #expect(attrs.contains("user.source_etag="))
        let mtime = try Self.sh("stat -c %Y \(box.pool)/multiblock.raw").trimmingCharacters(in: .whitespacesAndNewlines)
        let served = try Self.sh("stat -c %Y \(box.srv)/multiblock.raw.xz").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(mtime == served)
        let digest = try Self.sh("sha256sum \(box.srv)/multiblock.raw.xz").prefix(64)
        let show = try Imagectl.run(["show", "multiblock", "--json"], root: box.pool)
        #expect(show.stdout.contains(String(digest)), "\(show.stdout)")
        #expect(box.leftovers().allSatisfy { !$0.hasPrefix(".#") || $0.hasSuffix(".lck") }, "\(box.leftovers())")
    }

    @Test("pull-tar with a gpg signature of SHA256SUMS equals import-tar; pull-raw with a signed .sha256; file:// works")
    func tarWithSignature() throws {
        try Privileged.require(.tool("python3"), .tool("gpg"), .tool("gpgv"), .tool("getfattr"),
                               .fixture("busybox.tar.xz"), .fixture("bare-ext4.raw.xz"))
        let box = try Box()
        try box.serve(["busybox.tar.xz", "bare-ext4.raw.xz"])
        try Self.sh("cd \(box.srv) && sha256sum bare-ext4.raw.xz > bare-ext4.raw.xz.sha256")
        let key = try box.makeKey("trusted")
        try box.trust(key)
        try box.sign("SHA256SUMS", with: key, as: "SHA256SUMS.gpg")
        try box.sign("bare-ext4.raw.xz.sha256", with: key, as: "bare-ext4.raw.xz.sha256.asc")
        let server = try Server(directory: box.srv, log: box.path("log"))

        let tar = try Imagectl.run(["pull-tar", "--keyring=\(box.keyring)", server.url("busybox.tar.xz")], root: box.pool)
        #expect(tar.status == 0, "\(tar.stderr)")
        #expect(tar.stdout.contains("good signature"))
        let imported = try Imagectl.run(["import-tar", "\(box.srv)/busybox.tar.xz", "imported"], root: box.pool)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(try Self.treeListing("\(box.pool)/busybox") == Self.treeListing("\(box.pool)/imported"))

        let raw = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", server.url("bare-ext4.raw.xz")], root: box.pool)
        #expect(raw.status == 0, "\(raw.stderr)")
        try Self.sh("xz -dc \(box.srv)/bare-ext4.raw.xz | cmp - \(box.pool)/bare-ext4.raw")
        let paths = server.requests().compactMap { $0["path"] as? String }
        #expect(paths.contains("/bare-ext4.raw.xz.sha256.asc"))

        let local = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", "file://\(box.srv)/bare-ext4.raw.xz", "local"], root: box.pool)
        #expect(local.status == 0, "\(local.stderr)")
        try Self.sh("cmp \(box.pool)/local.raw \(box.pool)/bare-ext4.raw")
    }

    @Test("side files are fetched, checked against SHA256SUMS and stored beside the image; one without a checksum line is refused")
    func sideFiles() throws {
        try Privileged.require(.tool("python3"), .fixture("bare-ext4.raw.xz"))
        let box = try Box()
        try box.serve(["bare-ext4.raw.xz"], sums: false)
        try Self.sh("cd \(box.srv) && printf '[Exec]\\nBoot=no\\n' > bare-ext4.nspawn && printf '%064d\\n' 7 > bare-ext4.roothash && sha256sum bare-ext4.raw.xz bare-ext4.nspawn bare-ext4.roothash > SHA256SUMS")
        let server = try Server(directory: box.srv, log: box.path("log"))
        let ok = try Imagectl.run(["pull-raw", "--verify=checksum", "--read-only", server.url("bare-ext4.raw.xz")], root: box.pool)
        #expect(ok.status == 0, "\(ok.stderr)")
        try Self.sh("cmp \(box.srv)/bare-ext4.nspawn \(box.pool)/bare-ext4.nspawn && cmp \(box.srv)/bare-ext4.roothash \(box.pool)/bare-ext4.roothash")
        #expect(try Self.sh("stat -c %a \(box.pool)/bare-ext4.raw").hasPrefix("444"))

        // A side file the checksum file does not cover is not trusted: the pull is refused.
        try Self.sh("cd \(box.srv) && sha256sum bare-ext4.raw.xz bare-ext4.nspawn > SHA256SUMS")
        let refused = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("bare-ext4.raw.xz"), "other"], root: box.pool)
        Self.expectOneErrorLine(refused, containing: "bare-ext4.roothash")
        try Self.expectNoImage(box, "other")
        #expect(!FileManager.default.fileExists(atPath: "\(box.pool)/other.roothash"))
    }

    // MARK: - refusals

    @Test("tampered payload, tampered SHA256SUMS, unknown key, missing signature: refused with one error line, no image")
    func verificationRefusals() throws {
        try Privileged.require(.tool("python3"), .tool("gpg"), .tool("gpgv"), .fixture("bare-ext4.raw.xz"))
        let box = try Box()
        try box.serve(["bare-ext4.raw.xz"])
        let key = try box.makeKey("trusted")
        let stranger = try box.makeKey("stranger")
        try box.trust(key)
        let server = try Server(directory: box.srv, log: box.path("log"))
        let url = server.url("bare-ext4.raw.xz")

        // No signature at all: fails closed by default.
        let unsigned = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", url], root: box.pool)
        Self.expectOneErrorLine(unsigned, containing: "no signature found")
        try Self.expectNoImage(box, "bare-ext4")

        // Signed by a key that is not in the keyring.
        try box.sign("SHA256SUMS", with: stranger, as: "SHA256SUMS.gpg")
        let unknown = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", url], root: box.pool)
        Self.expectOneErrorLine(unknown, containing: "signature")
        try Self.expectNoImage(box, "bare-ext4")

        // Properly signed, then SHA256SUMS changed after signing.
        try box.sign("SHA256SUMS", with: key, as: "SHA256SUMS.gpg")
        try Self.sh("cd \(box.srv) && sed -i 's/^./0/' SHA256SUMS")
        let tamperedSums = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", url], root: box.pool)
        Self.expectOneErrorLine(tamperedSums, containing: "signature")
        try Self.expectNoImage(box, "bare-ext4")

        // Good signature over SHA256SUMS, but the payload was changed: the digest does not match.
        try Self.sh("cd \(box.srv) && sha256sum bare-ext4.raw.xz > SHA256SUMS")
        try box.sign("SHA256SUMS", with: key, as: "SHA256SUMS.gpg")
        // Flip every bit of one byte (a fixed replacement byte may equal what is there already).
        let payload = box.srv + "/bare-ext4.raw.xz"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: payload))
        bytes[4000] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: payload))
        let tampered = try Imagectl.run(["pull-raw", "--keyring=\(box.keyring)", url], root: box.pool)
        #expect(tampered.status == 1)
        #expect(tampered.stderr.split(separator: "\n").count == 1, "\(tampered.stderr)")
        #expect(tampered.stderr.hasPrefix("error: "))
        try Self.expectNoImage(box, "bare-ext4")
        // With --verify=checksum and a literal digest alike.
        let literal = try Imagectl.run(["pull-raw", "--verify=\(String(repeating: "ab", count: 32))", url, "lit"], root: box.pool)
        Self.expectOneErrorLine(literal, containing: "checksum mismatch")
        try Self.expectNoImage(box, "lit")
        // No keyring anywhere: refused before downloading.
        let noKeyring = try Imagectl.run(["pull-raw", "--keyring=\(box.path("nope.gpg"))", url], root: box.pool)
        Self.expectOneErrorLine(noKeyring, containing: "keyring")
    }

    @Test("truncated transfer, wrong Content-Length, oversize checksum file, 404, 401, self-signed https: refused, no image")
    func transferRefusals() throws {
        try Privileged.require(.tool("python3"), .tool("openssl"), .fixture("bare-ext4.raw.xz"), .fixture("busybox.tar.xz"))
        let box = try Box()
        try box.serve(["bare-ext4.raw.xz", "busybox.tar.xz"])
        try Self.sh("cp \(box.srv)/bare-ext4.raw.xz \(box.srv)/cut.raw.xz && cp \(box.srv)/bare-ext4.raw.xz \(box.srv)/long.raw.xz && cd \(box.srv) && sha256sum cut.raw.xz long.raw.xz >> SHA256SUMS")
        let server = try Server(directory: box.srv, log: box.path("log"),
                                arguments: ["--truncate", "cut.raw.xz", "--wrong-length", "long.raw.xz",
                                            "--status", "secret.raw.xz=401"])

        let cut = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("cut.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(cut, containing: "download truncated")
        try Self.expectNoImage(box, "cut")

        let long = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("long.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(long, containing: "content length incorrect")
        try Self.expectNoImage(box, "long")

        let missing = try Imagectl.run(["pull-raw", "--verify=no", server.url("nothing.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(missing, containing: "Wrong URL?")
        let secret = try Imagectl.run(["pull-raw", "--verify=no", server.url("secret.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(secret, containing: "credentials")
        try Self.expectNoImage(box, "secret")

        // A checksum file over 1 MiB is not read.
        try Self.sh("cd \(box.srv) && mkdir big && cp bare-ext4.raw.xz big/ && (sha256sum bare-ext4.raw.xz; head -c 1100000 /dev/zero | tr '\\0' '#') > big/SHA256SUMS")
        let bigServer = try Server(directory: "\(box.srv)/big", log: box.path("log-big"))
        let big = try Imagectl.run(["pull-raw", "--verify=checksum", bigServer.url("bare-ext4.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(big, containing: "exceeds the size limit")
        try Self.expectNoImage(box, "bare-ext4")

        // https with a self-signed certificate: TLS verification is on.
        try Self.sh("cd \(box.dir.path) && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null")
        let tls = try Server(directory: box.srv, log: box.path("log-tls"), arguments: ["--tls", box.path("cert.pem"), box.path("key.pem")])
        let https = try Imagectl.run(["pull-tar", "--verify=checksum", tls.url("busybox.tar.xz", scheme: "https")], root: box.pool)
        Self.expectOneErrorLine(https, containing: "certificate")
        try Self.expectNoImage(box, "busybox")
    }

    // MARK: - resume, cache, mirrors, progress

    @Test("a transfer cut half-way resumes with a Range request and verifies; a second pull gets a 304 and downloads nothing")
    func resumeAndCache() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz"])
        let server = try Server(directory: box.srv, log: box.path("log"), arguments: ["--drop-once", "multiblock.raw.xz"])
        let url = server.url("multiblock.raw.xz")
        let pulled = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let payloadRequests = server.requests().filter { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect(payloadRequests.count == 2)
        let resumed = payloadRequests.last
        #expect((resumed?["range"] as? String)?.hasPrefix("bytes=") == true && (resumed?["range"] as? String) != "bytes=0-")
        #expect((resumed?["status"] as? Int) == 206)
        try Self.sh("xz -dc \(box.srv)/multiblock.raw.xz | cmp - \(box.pool)/multiblock.raw")

        let again = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("up to date"))
        let last = server.requests().last { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect((last?["status"] as? Int) == 304)
        #expect(last?["if-none-match"] as? String != nil)

        // Without the cache match (another name) an existing name still needs --force.
        let exists = try Imagectl.run(["pull-raw", "--verify=checksum", url, "multiblock"], root: box.pool)
        #expect(exists.status == 0)
        try Self.sh("printf x >> \(box.srv)/multiblock.raw.xz")
        let changed = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        Self.expectOneErrorLine(changed, containing: "--force")
    }

    @Test("kill -9 during a pull leaves no image; the next pull of the same URL resumes with Range; clean tidies")
    func killAndResume() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz"])
        let slowArguments = ["--slow", "multiblock.raw.xz=8000000"]
        var server = try Server(directory: box.srv, log: box.path("log"), arguments: slowArguments)
        let port = server.port
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Imagectl.binary)
            process.arguments = ["pull-raw", "--verify=checksum", server.url("multiblock.raw.xz")]
            process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": box.pool]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let delay = Double.random(in: 0.2...(round == 0 ? 2.5 : 1.5), using: &generator)
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try Self.expectNoImage(box, "multiblock")
        }
        // The download is kept; a new server on the same port (same URL) without the slowdown.
        let kept = box.leftovers().filter { $0.hasSuffix(".download") }
        #expect(kept.count == 1, "\(box.leftovers())")
        server.stop()
        server = try Server(directory: box.srv, log: box.path("log2"), port: port)
        let done = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("multiblock.raw.xz")], root: box.pool)
        #expect(done.status == 0, "\(done.stderr)")
        let first = server.requests().first { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect((first?["range"] as? String)?.hasPrefix("bytes=") == true, "\(server.requests())")
        #expect((first?["status"] as? Int) == 206)
        try Self.sh("xz -dc \(box.srv)/multiblock.raw.xz | cmp - \(box.pool)/multiblock.raw")

        // Killed again on another name, then clean: nothing with .# is left.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        let slow = try Server(directory: box.srv, log: box.path("log3"), arguments: slowArguments)
        process.arguments = ["pull-raw", "--verify=checksum", slow.url("multiblock.raw.xz"), "second"]
        process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": box.pool]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Killed while the download is being written (its temporary is there).
        #expect(Poll.until(timeout: 20) { box.leftovers().contains { $0.hasPrefix(".#second") && !$0.hasSuffix(".lck") } })
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try Self.expectNoImage(box, "second")
        #expect(box.leftovers().contains { $0.hasPrefix(".#second") })
        let clean = try Imagectl.run(["clean"], root: box.pool)
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(box.leftovers().allSatisfy { !$0.hasPrefix(".#") }, "\(box.leftovers())")
    }

    /// Starts `pull-raw URL` and kills it with SIGKILL once its download file holds more than
    /// `bytes` bytes (polled); returns the download file's path.
    static func pullKilledAfterDownloading(_ url: String, bytes: UInt64, box: Box) throws -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["pull-raw", "--verify=checksum", url]
        process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": box.pool]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning {
            if let file = box.leftovers().first(where: { $0.hasSuffix(".download") }),
               let size = try? FileManager.default.attributesOfItem(atPath: "\(box.pool)/\(file)")[.size] as? UInt64, size > bytes {
                return "\(box.pool)/\(file)"
            }
            usleep(20_000)
        }
        return nil
    }

    @Test("a server that ignores Range (200 with the whole file): kept partial, kept complete and mid-transfer retries restart from zero")
    func rangeIgnored() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz"])
        let source = "\(box.srv)/multiblock.raw.xz"
        let slow = try Server(directory: box.srv, log: box.path("log-slow"), arguments: ["--slow", "multiblock.raw.xz=8000000"])
        let port = slow.port
        let url = slow.url("multiblock.raw.xz")

        // 1. A kill -9 kept part of the download; the next server ignores Range.
        let kept = try #require(try Self.pullKilledAfterDownloading(url, bytes: 2 << 20, box: box), "the download never started")
        slow.stop()
        var server = try Server(directory: box.srv, log: box.path("log-1"), arguments: ["--ignore-range"], port: port)
        let partial = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        #expect(partial.status == 0, "\(partial.stderr)")
        let first = server.requests().first { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect((first?["range"] as? String)?.hasPrefix("bytes=") == true && (first?["status"] as? Int) == 200, "\(server.requests())")
        try Self.sh("xz -dc \(source) | cmp - \(box.pool)/multiblock.raw")
        #expect(!FileManager.default.fileExists(atPath: kept))

        // 2. The kept download is complete (the kill came during the import): the server's 200
        // announces exactly the kept size. Once ended as "already downloaded" with no bytes.
        #expect(try Imagectl.run(["remove", "multiblock"], root: box.pool).status == 0)
        server.stop()
        let slow2 = try Server(directory: box.srv, log: box.path("log-slow2"), arguments: ["--slow", "multiblock.raw.xz=8000000"], port: port)
        let kept2 = try #require(try Self.pullKilledAfterDownloading(url, bytes: 1 << 20, box: box), "the download never started")
        slow2.stop()
        // Same inode, so the recorded URL and ETag stay.
        try Self.sh("cat \(source) > \(kept2)")
        server = try Server(directory: box.srv, log: box.path("log-2"), arguments: ["--ignore-range"], port: port)
        let complete = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        #expect(complete.status == 0, "\(complete.stderr)")
        try Self.sh("xz -dc \(source) | cmp - \(box.pool)/multiblock.raw")

        // 3. The connection drops half-way and the retry's Range is ignored: the bytes the import
        // already read are compared with the new 200's and the rest appended.
        #expect(try Imagectl.run(["remove", "multiblock"], root: box.pool).status == 0)
        server.stop()
        server = try Server(directory: box.srv, log: box.path("log-3"), arguments: ["--ignore-range", "--drop-once", "multiblock.raw.xz"], port: port)
        let retried = try Imagectl.run(["pull-raw", "--verify=checksum", url], root: box.pool)
        #expect(retried.status == 0, "\(retried.stderr)")
        let payload = server.requests().filter { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect(payload.count == 2 && (payload.last?["range"] as? String) != nil && (payload.last?["status"] as? Int) == 200, "\(payload)")
        try Self.sh("xz -dc \(source) | cmp - \(box.pool)/multiblock.raw")
        // What the two killed pulls left (their pending images) is clean's to remove.
        #expect(try Imagectl.run(["clean"], root: box.pool).status == 0)
        #expect(box.leftovers().allSatisfy { !$0.hasPrefix(".#") }, "\(box.leftovers())")
    }

    @Test("a full file system under the pool: one error line naming 'No space left on device', nothing kept, at three fill levels")
    func fullFileSystem() throws {
        try Privileged.require(.root, .loopDevices, .tool("mkfs.ext4"), .tool("fallocate"), .tool("python3"))
        let box = try Box()
        let size = 24 << 20
        try Self.sh("head -c \(size) /dev/urandom > \(box.srv)/disk.raw && cd \(box.srv) && sha256sum disk.raw > SHA256SUMS")
        let server = try Server(directory: box.srv, log: box.path("log"))
        let fs = try SmallFileSystem(size: "96M")
        defer { fs.unmount() }
        let pool = fs.appending("pool")
        try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
        // The download and the image each take `size`: out of space during the download, during
        // the image, and near the end of the image.
        for level in [UInt64(64 << 10), UInt64(size), UInt64(2 * size - (1 << 20))] {
            try fs.fill(leaving: level)
            let result = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("disk.raw")], root: pool)
            Self.expectOneErrorLine(result, containing: "No space left on device")
            let left = try FileManager.default.contentsOfDirectory(atPath: pool).filter { !$0.hasSuffix(".lck") }
            #expect(left.isEmpty, "\(level) bytes free: \(left)")
        }
        try FileManager.default.removeItem(atPath: fs.appending("filler"))
        let pulled = try Imagectl.run(["pull-raw", "--verify=checksum", server.url("disk.raw")], root: pool)
        #expect(pulled.status == 0, "\(pulled.stderr)")
    }

    @Test("SIGTERM during a pull: exit 143, no image; --mirror is tried after a failing URL; --json progress lines")
    func signalsMirrorsJSON() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"), .fixture("busybox.tar.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz", "busybox.tar.xz"])
        let slow = try Server(directory: box.srv, log: box.path("log"), arguments: ["--slow", "multiblock.raw.xz=4000000"])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["pull-raw", "--verify=checksum", slow.url("multiblock.raw.xz")]
        process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": box.pool]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Signalled while the download is being written (its temporary is there).
        #expect(Poll.until(timeout: 20) { box.leftovers().contains { $0.hasPrefix(".#") && !$0.hasSuffix(".lck") } })
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 143)
        try Self.expectNoImage(box, "multiblock")
        #expect(box.leftovers().allSatisfy { !$0.hasSuffix(".tmp") }, "\(box.leftovers())")

        let server = try Server(directory: box.srv, log: box.path("log2"), arguments: ["--status", "busybox.tar.xz=503"])
        let other = try Server(directory: box.srv, log: box.path("log3"))
        let mirrored = try Imagectl.run(["pull-tar", "--verify=checksum", "--json", "--mirror=\(other.url("busybox.tar.xz"))",
                                         server.url("busybox.tar.xz")], root: box.pool)
        #expect(mirrored.status == 0, "\(mirrored.stderr)")
        let events = mirrored.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(events.count == mirrored.stdout.split(separator: "\n").count, "\(mirrored.stdout)")
        #expect(events.contains { ($0["event"] as? String) == "note" })
        #expect(events.contains { ($0["event"] as? String) == "end" && ($0["phase"] as? String) == "download" })
        #expect((events.last?["event"] as? String) == "done")
        #expect((events.last?["name"] as? String) == "busybox")
        #expect(FileManager.default.fileExists(atPath: "\(box.pool)/busybox/etc/os-release"))
    }
}

// MARK: - --keep-download

extension PullCLITests {
    /// The pool's kept downloads: hidden entries that start with `prefix` (".raw-" or ".tar-").
    static func keptEntries(_ box: Box, _ prefix: String) -> [String] {
        box.leftovers().filter { $0.hasPrefix(prefix) && !$0.hasSuffix(".imagectl.json") }
    }

    /// `show`'s "Read-only" line says yes.
    static func shownReadOnly(_ name: String, _ box: Box) throws -> Bool {
        let show = try Imagectl.run(["show", name], root: box.pool)
        return show.stdout.split(separator: "\n").contains { $0.contains("Read-only") && $0.contains("yes") }
    }

    /// GETs of `path` the server answered with the whole file (200) or a part of it (206).
    static func payloadTransfers(_ server: Server, _ path: String) -> Int {
        server.requests().filter { ($0["path"] as? String) == path && [200, 206].contains($0["status"] as? Int ?? 0) }.count
    }

    @Test("pull-raw --keep-download: a read-only hidden kept copy equal to the image; a second pull clones it after a 304; remove and clean leave it")
    func keepDownloadRaw() throws {
        try Privileged.require(.tool("python3"), .fixture("multiblock.raw.xz"))
        let box = try Box()
        try box.serve(["multiblock.raw.xz"])
        let server = try Server(directory: box.srv, log: box.path("log"))
        let url = server.url("multiblock.raw.xz")
        let pulled = try Imagectl.run(["pull-raw", "--verify=checksum", "--keep-download", url], root: box.pool)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let kept = Self.keptEntries(box, ".raw-")
        try #require(kept.count == 1, "\(box.leftovers())")
        let keptFile = kept[0]
        #expect(keptFile.hasSuffix(".raw") && !keptFile.contains("/"))
        #expect(keptFile.contains("multiblock.raw.xz"), "\(keptFile)")
        let keptName = String(keptFile.dropLast(4))
        try Self.sh("cmp \(box.pool)/multiblock.raw '\(box.pool)/\(keptFile)'")
        try Self.sh("xz -dc \(box.srv)/multiblock.raw.xz | cmp - '\(box.pool)/\(keptFile)'")
        // Read-only as the store marks raw files (no write bits), and `show` says so; the image is writable.
        let keptMode = try Self.sh("stat -c %a '\(box.pool)/\(keptFile)'").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(Int(keptMode, radix: 8).map { $0 & 0o222 == 0 } == true, "mode \(keptMode)")
        #expect(try Self.shownReadOnly(keptName, box))
        #expect(try !Self.shownReadOnly("multiblock", box))
        let attrs = try Self.sh("getfattr -d --absolute-names '\(box.pool)/\(keptFile)'")
        #expect(attrs.contains("user.source_url=\"\(url)\"") && attrs.contains("user.source_etag="), "\(attrs)")
        // Hidden: not in `list`, in `list --all`.
        let list = try Imagectl.run(["list"], root: box.pool)
        #expect(!list.stdout.contains(".raw-") && list.stdout.contains("multiblock"), "\(list.stdout)")
        #expect(try Imagectl.run(["list", "--all"], root: box.pool).stdout.contains(keptName))
        #expect(Self.payloadTransfers(server, "/multiblock.raw.xz") == 1)

        // Same URL, another name: 304 against the kept copy's ETag, cloned without the payload.
        let second = try Imagectl.run(["pull-raw", "--verify=checksum", "--keep-download", url, "second"], root: box.pool)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("Pulled second as"), "\(second.stdout)")
        #expect(Self.payloadTransfers(server, "/multiblock.raw.xz") == 1, "\(server.requests())")
        let last = server.requests().last { ($0["path"] as? String) == "/multiblock.raw.xz" }
        #expect((last?["status"] as? Int) == 304)
        try Self.sh("cmp \(box.pool)/second.raw '\(box.pool)/\(keptFile)'")
        #expect(try !Self.shownReadOnly("second", box))
        #expect(Self.keptEntries(box, ".raw-") == kept)

        // remove and clean (without --all) leave the kept copy; no `.#` leftovers.
        #expect(try Imagectl.run(["remove", "multiblock", "second"], root: box.pool).status == 0)
        #expect(try Imagectl.run(["clean"], root: box.pool).status == 0)
        #expect(Self.keptEntries(box, ".raw-") == kept)
        try Self.sh("xz -dc \(box.srv)/multiblock.raw.xz | cmp - '\(box.pool)/\(keptFile)'")
        #expect(box.leftovers().allSatisfy { !$0.hasPrefix(".#") || $0.hasSuffix(".lck") }, "\(box.leftovers())")

        // After the file changed on the server, a new ETag: downloaded, and a second kept copy.
        try Self.sh("cp \(box.srv)/multiblock.raw.xz \(box.path("orig.xz")) && xz -dc \(box.path("orig.xz")) | head -c 1048576 | xz -0 > \(box.srv)/multiblock.raw.xz && cd \(box.srv) && sha256sum multiblock.raw.xz > SHA256SUMS")
        let changed = try Imagectl.run(["pull-raw", "--verify=checksum", "--keep-download", url, "third"], root: box.pool)
        #expect(changed.status == 0, "\(changed.stderr)")
        #expect(Self.payloadTransfers(server, "/multiblock.raw.xz") == 2)
        #expect(Self.keptEntries(box, ".raw-").count == 2, "\(box.leftovers())")
        try Self.sh("xz -dc \(box.srv)/multiblock.raw.xz | cmp - \(box.pool)/third.raw")
    }

    @Test("pull-tar --keep-download: a read-only hidden kept tree equal to the image; a second pull clones it after a 304")
    func keepDownloadTar() throws {
        try Privileged.require(.tool("python3"), .tool("getfattr"), .fixture("busybox.tar.xz"))
        let box = try Box()
        try box.serve(["busybox.tar.xz"])
        let server = try Server(directory: box.srv, log: box.path("log"))
        let url = server.url("busybox.tar.xz")
        let pulled = try Imagectl.run(["pull-tar", "--verify=checksum", "--keep-download", url], root: box.pool)
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let kept = Self.keptEntries(box, ".tar-")
        try #require(kept.count == 1, "\(box.leftovers())")
        let keptName = kept[0]
        #expect(try Self.treeListing("\(box.pool)/busybox") == Self.treeListing("\(box.pool)/\(keptName)"))
        #expect(try Self.shownReadOnly(keptName, box))
        #expect(try !Self.shownReadOnly("busybox", box))
        // Read-only for real: creating a file at the kept tree's top fails even for root.
        #expect((try? Self.sh("touch '\(box.pool)/\(keptName)/new-file' 2>&1")) == nil)
        #expect(!(try Imagectl.run(["list"], root: box.pool).stdout.contains(".tar-")))

        let second = try Imagectl.run(["pull-tar", "--verify=checksum", "--keep-download", url, "again"], root: box.pool)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(Self.payloadTransfers(server, "/busybox.tar.xz") == 1, "\(server.requests())")
        #expect((server.requests().last { ($0["path"] as? String) == "/busybox.tar.xz" }?["status"] as? Int) == 304)
        #expect(try Self.treeListing("\(box.pool)/again") == Self.treeListing("\(box.pool)/\(keptName)"))
        // The clone is writable and changing it leaves the kept tree as it was.
        try Self.sh("touch \(box.pool)/again/new-file")
        #expect(!FileManager.default.fileExists(atPath: "\(box.pool)/\(keptName)/new-file"))

        #expect(try Imagectl.run(["remove", "busybox", "again"], root: box.pool).status == 0)
        #expect(try Imagectl.run(["clean"], root: box.pool).status == 0)
        #expect(Self.keptEntries(box, ".tar-") == kept)
        #expect(box.leftovers().allSatisfy { !$0.hasPrefix(".#") || $0.hasSuffix(".lck") }, "\(box.leftovers())")
        // The kept tree goes only when asked for by name (and so the temporary directory can go).
        #expect(try Imagectl.run(["remove", keptName], root: box.pool).status == 0)
        #expect(Self.keptEntries(box, ".tar-").isEmpty, "\(box.leftovers())")
    }
}
