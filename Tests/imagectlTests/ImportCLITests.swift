import Foundation
import Testing
import TestSupport

/// The import verbs as a user runs them: exit statuses, one `error:` line, nothing left behind,
/// and the same result as systemd-import.
@Suite("import CLI")
struct ImportCLITests {
    /// Immutable after init (the temporary directory path); shared read-only between test cases.
    final class Box: @unchecked Sendable {
        let dir: TemporaryDirectory
        var pool: String { dir.appending("pool") }
        init() throws { dir = try TemporaryDirectory(prefix: "imagectl-import-cli") }
        func path(_ name: String) -> String { dir.appending(name) }

        /// Pool entries apart from lock files.
        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: pool)) ?? []).filter { !$0.hasSuffix(".lck") }.sorted()
        }
    }

    @discardableResult
    static func sh(_ command: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else { throw Failure(text: "\(command): \(result.stderr)") }
        return result.stdout
    }

    struct Failure: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }

    /// 8 MiB: text-like data with 1 MiB zero holes.
    static func makeDisk(_ path: String) throws {
        try sh("python3 -c \"import sys,random; r=random.Random(5); sys.stdout.buffer.write(b''.join((bytes(r.choice(b'abcdefgh') for _ in range(1<<20)) if i%2==0 else bytes(1<<20)) for i in range(8)))\" > \(path)")
    }

    static func expectOneErrorLine(_ result: Tool.Result, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 1, "exit status \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(lines.first?.hasPrefix("error: ") == true, sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    }

    @Test("import-raw: name from the file name, stdin needs NAME, existing name needs --force, --read-only")
    func rawBasics() throws {
        try Privileged.require(.tool("python3"))
        let box = try Box()
        try Self.makeDisk(box.path("disk.raw"))
        try Self.sh("xz -T2 -k \(box.path("disk.raw"))")
        let ok = try Imagectl.run(["import-raw", box.path("disk.raw.xz")], root: box.pool)
        #expect(ok.status == 0, "\(ok.stderr)")
        try Self.sh("cmp \(box.path("disk.raw")) \(box.pool)/disk.raw")

        let again = try Imagectl.run(["import-raw", box.path("disk.raw.xz")], root: box.pool)
        #expect(again.status != 0)
        #expect(again.stderr.hasPrefix("error: "))
        let forced = try Imagectl.run(["import-raw", "--force", "--read-only", box.path("disk.raw"), "disk"], root: box.pool)
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try Self.sh("stat -c %a \(box.pool)/disk.raw").trimmingCharacters(in: .whitespacesAndNewlines) == "444")

        let noName = try Imagectl.run(["import-raw", "-"], root: box.pool, stdin: box.path("disk.raw.xz"))
        #expect(noName.status == 2)
        #expect(noName.stderr.contains("NAME is required"))
        let piped = try Imagectl.run(["import-raw", "-", "piped"], root: box.pool, stdin: box.path("disk.raw.xz"))
        #expect(piped.status == 0, "\(piped.stderr)")
        try Self.sh("cmp \(box.path("disk.raw")) \(box.pool)/piped.raw")
        #expect(box.leftovers() == ["disk.raw", "piped.raw"] || box.leftovers().allSatisfy { !$0.hasPrefix(".#") })

        let missing = try Imagectl.run(["import-raw", box.path("nope.raw")], root: box.pool)
        Self.expectOneErrorLine(missing, containing: "nope.raw")
    }

    /// Hostile samples and broken streams, made once for all the bad-input cases.
    static let badInputs: Result<Box, Failure> = {
        do {
            let box = try Box()
            try sh("mkdir -p \(box.path("outside")) && python3 \(Fixtures.repositoryPath("hostile/make-hostile.py")) \(box.path("s")) \(box.path("outside"))")
            try makeDisk(box.path("d"))
            try sh("""
                cd \(box.dir.path)
                xz -c d > d.xz; head -c 20000 d.xz > cut.xz
                gzip -c d > d.gz; head -c 20000 d.gz > cut.gz
                zstd -q -c d > d.zst; head -c 20000 d.zst > cut.zst
                bzip2 -c d > d.bz2; head -c 20000 d.bz2 > cut.bz2
                python3 -c "import sys; b=bytearray(open('d.xz','rb').read()); b[len(b)//2]^=4; open('flip.xz','wb').write(b)"
                """)
            return .success(box)
        } catch {
            return .failure(Failure(text: "\(error)"))
        }
    }()

    @Test("bad input: one error line, exit 1, no image, no temporary, nothing outside (SECURITY 1-4, 7, 10)",
          arguments: [
            ("import-tar", "s/absolute.tar", "absolute path"),
            ("import-tar", "s/dotdot.tar", "contains '..'"),
            ("import-tar", "s/dotdot-deep.tar", "contains '..'"),
            ("import-tar", "s/symlink-write.tar", "through the symlink"),
            ("import-tar", "s/symlink-relative-write.tar", "through the symlink"),
            ("import-tar", "s/hardlink-absolute.tar", "points outside the tree"),
            ("import-tar", "s/hardlink-dotdot.tar", "points outside the tree"),
            ("import-tar", "s/hardlink-via-symlink.tar", "through the symlink"),
            ("import-tar", "s/hardlink-directory.tar", "points at a directory"),
            ("import-tar", "s/deep.tar", "levels deep"),
            ("import-tar", "d", "not a tar archive"),
            ("import-raw", "s/l1-past-eof.qcow2", "L1 table at offset"),
            ("import-raw", "s/l2-past-eof.qcow2", "L2 table at offset"),
            ("import-raw", "s/huge-size.qcow2", "exceeds the size limit"),
            ("import-raw", "s/cluster-bits-high.qcow2", "cluster_bits 31"),
            ("import-raw", "s/cluster-bits-low.qcow2", "cluster_bits 8"),
            ("import-raw", "s/encrypted.qcow2", "encrypted"),
            ("import-raw", "s/refcount-past-eof.qcow2", "refcount table is invalid"),
            ("import-raw", "s/refcount-order.qcow2", "refcount_order"),
            ("import-raw", "s/unknown-incompatible.qcow2", "unknown bits"),
            ("import-raw", "s/l1-huge.qcow2", "larger than 32 MiB"),
            ("import-raw", "s/compressed-past-eof.qcow2", "compressed cluster at offset"),
            ("import-raw", "s/compressed-garbage.qcow2", "is corrupt"),
            ("import-raw", "s/backing.qcow2", "backing file"),
            ("import-raw", "cut.xz", "xz stream ends early"),
            ("import-raw", "cut.gz", "gzip stream ends early"),
            ("import-raw", "cut.zst", "zstd stream ends early"),
            ("import-raw", "cut.bz2", "bzip2 stream is corrupt"),
            ("import-raw", "flip.xz", "xz stream is corrupt"),
          ])
    func badInput(verb: String, file: String, message: String) throws {
        try Privileged.require(.tool("python3"), .tool("qemu-img"))
        let shared = try Self.badInputs.get()
        // A pool of its own per case, so leftovers are attributable.
        let pool = shared.path("pool-\(UUID().uuidString.prefix(8))")
        let result = try Imagectl.run([verb, shared.path(file), "victim"], root: pool)
        Self.expectOneErrorLine(result, containing: message)
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: pool)) ?? []).filter { !$0.hasSuffix(".lck") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: shared.path("outside")).isEmpty)
    }

    @Test("names never alias: a name ending in .raw or a side-file suffix is a usage error (exit 2), nothing imported")
    func aliasingNamesRefused() throws {
        let box = try Box()
        try Self.sh("mkdir -p \(box.path("t")) && echo hi > \(box.path("t/file")) && tar -C \(box.path("t")) -cf \(box.path("tiny.tar")) .")
        try Self.makeDisk(box.path("disk"))
        for (verb, file, name) in [("import-tar", "tiny.tar", "x.raw"), ("import-tar", "tiny.tar", "x.nspawn"),
                                   ("import-raw", "disk", "y.raw"), ("import-fs", "t", "z.roothash")] {
            let result = try Imagectl.run([verb, box.path(file), name], root: box.pool)
            #expect(result.status == 2, "\(verb) \(name): \(result.status) \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.hasPrefix("error: "), "\(result.stderr)")
            #expect(result.stderr.contains("ends in '"), "\(result.stderr)")
        }
        #expect(box.leftovers().isEmpty, "\(box.leftovers())")
        // "x" and "x.raw" can no longer be two names for one image.
        #expect(try Imagectl.run(["import-tar", box.path("tiny.tar"), "x"], root: box.pool).status == 0)
        let removeAlias = try Imagectl.run(["remove", "x.raw"], root: box.pool)
        #expect(removeAlias.status == 2, "\(removeAlias.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(box.pool)/x/file"))
    }

    @Test("import-raw refuses an empty file, an empty pipe and a FIFO path: one error line, no image")
    func emptyOrNonRegularSource() throws {
        let box = try Box()
        _ = FileManager.default.createFile(atPath: box.path("empty"), contents: nil)
        try Self.sh("mkfifo \(box.path("fifo")) && printf '' | xz -c > \(box.path("empty.xz"))")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("empty"), "e"], root: box.pool), containing: "no data")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("empty.xz"), "e"], root: box.pool), containing: "no data")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", "-", "e"], root: box.pool, stdin: box.path("empty")), containing: "no data")
        // A FIFO path is refused at once (nobody writes to it: a read would block forever).
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("fifo"), "f"], root: box.pool), containing: "not a regular file or block device")
        #expect(box.leftovers().isEmpty, "\(box.leftovers())")
    }

    @Test("import-raw of a tar holding one disk image file (Debian's cloud image layout) takes that file")
    func rawFromTar() throws {
        try Privileged.require(.tool("python3"), .tool("tar"))
        let box = try Box()
        try FileManager.default.createDirectory(atPath: box.path("in"), withIntermediateDirectories: true)
        try Self.makeDisk(box.path("in/disk.raw"))
        // As Debian makes them: GNU format, sparse, xz; a second plain tar with a "./" entry
        // (directories are passed over), gzip-compressed through a pipe.
        try Self.sh("tar -C \(box.path("in")) --format=gnu --sparse -cf - disk.raw | xz -T2 -c > \(box.path("cloud.tar.xz"))")
        try Self.sh("tar -C \(box.path("in")) -cf - . | gzip -c > \(box.path("dotted.tar.gz"))")
        let ok = try Imagectl.run(["import-raw", box.path("cloud.tar.xz")], root: box.pool)
        #expect(ok.status == 0, "\(ok.stderr)")
        try Self.sh("cmp \(box.path("in/disk.raw")) \(box.pool)/cloud.raw")
        // Written sparse: the 4 MiB of zero holes take no blocks.
        let blocks = try Self.sh("stat -c %b \(box.pool)/cloud.raw").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((Int(blocks) ?? .max) * 512 <= 5 << 20, "allocated \(blocks) blocks")
        let shown = try Imagectl.run(["show", "cloud", "--json=short"], root: box.pool)
        #expect(shown.stdout.contains("raw+tar+xz"), "\(shown.stdout)")
        let piped = try Imagectl.run(["import-raw", "-", "dotted"], root: box.pool, stdin: box.path("dotted.tar.gz"))
        #expect(piped.status == 0, "\(piped.stderr)")
        try Self.sh("cmp \(box.path("in/disk.raw")) \(box.pool)/dotted.raw")
        #expect(box.leftovers().filter { $0.hasSuffix(".raw") || $0.hasPrefix(".#") } == ["cloud.raw", "dotted.raw"], "\(box.leftovers())")
    }

    @Test("import-raw of a tar with no, several or no regular file: one error line, nothing left")
    func rawFromBadTar() throws {
        try Privileged.require(.tool("tar"))
        let box = try Box()
        try Self.sh("""
            cd \(box.dir.path) && mkdir -p two/d only-dir/d link empty &&
            printf 'disk one' > two/a.raw && printf 'disk two' > two/d/b.raw &&
            ln -s /etc/os-release link/disk.raw && : > empty/disk.raw &&
            tar -C two -cf two.tar . && tar -C only-dir -cf only-dir.tar . &&
            tar -C link -cJf link.tar.xz disk.raw && tar -C empty -cf empty.tar disk.raw
            """)
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("two.tar"), "t"], root: box.pool), containing: "more than one file")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("only-dir.tar"), "t"], root: box.pool), containing: "holds no regular file")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("link.tar.xz"), "t"], root: box.pool), containing: "disk.raw is a symbolic link")
        Self.expectOneErrorLine(try Imagectl.run(["import-raw", box.path("empty.tar"), "t"], root: box.pool), containing: "no data")
        #expect(box.leftovers().isEmpty, "\(box.leftovers())")
    }

    @Test("--max-size stops a decompression bomb (SECURITY 6)")
    func bomb() throws {
        let box = try Box()
        try Self.sh("head -c 200000000 /dev/zero | xz -T2 -c > \(box.path("bomb.raw.xz"))")
        let result = try Imagectl.run(["import-raw", "--max-size=50M", box.path("bomb.raw.xz")], root: box.pool)
        Self.expectOneErrorLine(result, containing: "exceeds the size limit of 52428800 bytes")
        #expect(box.leftovers().isEmpty)
        let usage = try Imagectl.run(["import-raw", "--max-size=lots", box.path("bomb.raw.xz")], root: box.pool)
        #expect(usage.status == 2)
    }

    /// ~200 MiB of compressible data as a two-block xz.
    static func bigXZ(_ box: Box) throws -> String {
        let path = box.path("big.raw.xz")
        try sh("python3 -c \"import sys; sys.stdout.buffer.write((b'imagectl kill test ' * 55189 + bytes(1<<20)) * 100)\" | xz -T2 -1 --block-size=64MiB -c > \(path)")
        return path
    }

    /// `imagectl import-raw - big` fed from a pipe with the first `fraction` of `input`: the
    /// import then waits for the rest, so a signal sent now always lands mid-import (a file
    /// argument could be imported completely before the signal on a fast machine). Returns once
    /// the import's temporary exists.
    static func importStalled(_ input: String, fraction: Double, box: Box) throws -> (Process, Pipe) {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["import-raw", "-", "big"]
        process.environment = ProcessInfo.processInfo.environment.merging(["IMAGECTL_ROOT": box.pool]) { $1 }
        process.standardInput = pipe
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = try Data(contentsOf: URL(fileURLWithPath: input))
        try pipe.fileHandleForWriting.write(contentsOf: data.prefix(Int(Double(data.count) * fraction)))
        Poll.until(timeout: 5) { box.leftovers().contains { $0.hasPrefix(".#big") } }
        // Let it take in what it was given.
        Thread.sleep(forTimeInterval: 0.2)
        return (process, pipe)
    }

    @Test("kill -9 at several points leaves no image under the final name; clean removes the rest (SECURITY 11)")
    func killNine() throws {
        try Privileged.require(.tool("python3"))
        let box = try Box()
        let input = try Self.bigXZ(box)
        for fraction in [0.0, 0.1, 0.4, 0.8, 0.99] {
            let (process, pipe) = try Self.importStalled(input, fraction: fraction, box: box)
            #expect(process.isRunning, "the import ended before kill -9 at \(fraction)")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? pipe.fileHandleForWriting.close()
            #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
            #expect(!FileManager.default.fileExists(atPath: "\(box.pool)/big.raw"), "image appeared after kill -9 at \(fraction)")
        }
        #expect(box.leftovers().contains { $0.hasPrefix(".#") }, "kill -9 left no temporary for clean to remove: \(box.leftovers())")
        let clean = try Imagectl.run(["clean"], root: box.pool)
        #expect(clean.status == 0, "\(clean.stderr)")
        #expect(box.leftovers().filter { $0.hasPrefix(".#") }.isEmpty, "\(box.leftovers())")
    }

    @Test("SIGTERM and SIGINT stop the import and remove the temporary")
    func terminate() throws {
        try Privileged.require(.tool("python3"))
        let box = try Box()
        let input = try Self.bigXZ(box)
        for signal in [SIGTERM, SIGINT] {
            let (process, pipe) = try Self.importStalled(input, fraction: 0.3, box: box)
            #expect(process.isRunning, "the import ended before signal \(signal)")
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            try? pipe.fileHandleForWriting.close()
            #expect(process.terminationStatus == 128 + signal)
            #expect(box.leftovers().isEmpty, "\(box.leftovers())")
        }
    }

    @Test("a full disk (ENOSPC) fails cleanly and leaves nothing behind (SECURITY 11)")
    func diskFull() throws {
        try Privileged.require(.root)
        let box = try Box()
        let small = box.path("small")
        try Self.sh("mkdir -p \(small) && mount -t tmpfs -o size=4m tmpfs \(small) && head -c 12582912 /dev/urandom > \(box.path("big.raw"))")
        defer { _ = try? Self.sh("umount \(small)") }
        let result = try Imagectl.run(["import-raw", box.path("big.raw")], root: "\(small)/pool")
        Self.expectOneErrorLine(result, containing: "No space left on device")
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: "\(small)/pool")) ?? []).filter { !$0.hasSuffix(".lck") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test("same result as /lib/systemd/systemd-import raw: identical bytes, no more allocated blocks")
    func compareRawWithSystemdImport() throws {
        try Privileged.require(.root, .tool("/lib/systemd/systemd-import"), .tool("python3"))
        let box = try Box()
        try Self.makeDisk(box.path("cmp.raw"))
        try Self.sh("xz -T2 --block-size=2MiB -k \(box.path("cmp.raw")) && mkdir -p \(box.path("peer"))")
        try Self.sh("/lib/systemd/systemd-import raw \(box.path("cmp.raw.xz")) cmp --image-root=\(box.path("peer")) --sync=no 2>/dev/null")
        let ours = try Imagectl.run(["import-raw", box.path("cmp.raw.xz")], root: box.pool)
        #expect(ours.status == 0, "\(ours.stderr)")
        try Self.sh("cmp \(box.path("peer"))/cmp.raw \(box.pool)/cmp.raw")
        let peerBlocks = Int(try Self.sh("stat -c %b \(box.path("peer"))/cmp.raw").trimmingCharacters(in: .whitespacesAndNewlines))!
        let ourBlocks = Int(try Self.sh("stat -c %b \(box.pool)/cmp.raw").trimmingCharacters(in: .whitespacesAndNewlines))!
        #expect(ourBlocks <= peerBlocks)
    }

    @Test("same tree as /lib/systemd/systemd-import tar: paths, types, modes, owners, sizes, contents, xattrs")
    func compareTarWithSystemdImport() throws {
        try Privileged.require(.root, .tool("/lib/systemd/systemd-import"), .tool("setfattr"))
        let box = try Box()
        let tree = box.path("tree")
        try Self.sh("""
            set -e; mkdir -p \(tree)/etc/sub \(tree)/dev \(tree)/var/empty; cd \(tree)
            echo a > etc/a; chown 10:20 etc/a; chmod 600 etc/a; setfattr -n user.t -v 1 etc/a
            ln etc/a etc/sub/hard; ln -s /etc/a etc/abs-link; mknod dev/zero c 1 5; mkfifo dev/p
            head -c 300000 /dev/urandom > etc/blob; chmod 1777 var/empty; chmod 2755 etc/sub
            tar --xattrs --xattrs-include='*' --numeric-owner -C \(tree) -cJf \(box.path("t.tar.xz")) .
            mkdir -p \(box.path("peer"))
            """)
        try Self.sh("/lib/systemd/systemd-import tar \(box.path("t.tar.xz")) t --image-root=\(box.path("peer")) --sync=no 2>/dev/null")
        let ours = try Imagectl.run(["import-tar", box.path("t.tar.xz")], root: box.pool)
        #expect(ours.status == 0, "\(ours.stderr)")
        let listing = "find . -printf '%p %y %m %U:%G %s %l\\n' | sort; find . -type f -exec sha256sum {} + | sort; getfattr -R -d -m user. . 2>/dev/null | grep -v '^#' | grep -v '^$' | sort"
        try Self.sh("cmp \(tree)/etc/blob \(box.pool)/t/etc/blob")
        let peer = try Self.sh("cd \(box.path("peer"))/t && \(listing)")
        let mine = try Self.sh("cd \(box.pool)/t && \(listing)")
        #expect(peer == mine)
        #expect(mine.contains("user.t=\"1\""))
    }
}
