import Foundation
import ImageStore
import Testing
import TestSupport
@testable import Import

/// A pool in a temporary directory, plus a directory that escaping entries would land in.
final class Sandbox {
    let dir: TemporaryDirectory
    let pool: String
    let outside: String
    let store: ImageStore

    init() throws {
        dir = try TemporaryDirectory(prefix: "imagectl-import")
        pool = dir.appending("pool")
        outside = dir.appending("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        store = try ImageStore(root: pool)
    }

    func path(_ name: String) -> String { dir.appending(name) }

    /// Every entry of the pool (hidden ones included).
    func poolEntries() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: pool).sorted()
    }

    /// Pool entries other than lock files: what a failed import must not leave.
    func leftovers() throws -> [String] {
        try poolEntries().filter { !$0.hasSuffix(".lck") }
    }

    /// Files anywhere in the sandbox outside the pool, apart from the inputs we put there.
    func strayFiles(besides inputs: Set<String>) throws -> [String] {
        let out = try Sample.sh("cd \(dir.path) && find . -path ./pool -prune -o -path ./s -prune -o -print")
        return out.split(separator: "\n").map(String.init).filter { $0 != "." && $0 != "./outside" && !inputs.contains($0) }
    }

    func makeHostile() throws {
        try Sample.sh("python3 \(Fixtures.repositoryPath("hostile/make-hostile.py")) \(path("s")) \(outside)")
    }
}

func sha256sum(_ path: String) throws -> String {
    String(try Sample.sh("sha256sum \(path)").prefix(64))
}

@Suite("Importer")
struct ImporterTests {
    @Test("raw: every compression round-trips, sparse, provenance records the input's SHA-256 and format",
          arguments: ["", "xz", "gzip", "zstd", "bzip2"])
    func rawRoundTrip(compressor: String) async throws {
        let box = try Sandbox()
        var original = Sample.bytes(4 << 20, seed: 21)
        original += [UInt8](repeating: 0, count: 4 << 20)
        try Sample.write(original, to: box.path("disk.raw"))
        var input = box.path("disk.raw")
        if !compressor.isEmpty {
            input = box.path("disk.raw.c")
            try Sample.sh("\(compressor) -c \(box.path("disk.raw")) > \(input)")
        }
        let name = try ImageName(validating: "disk")
        let image = try await Importer.importRaw(from: .file(input), as: name, into: box.store, options: ImportOptions())
        #expect(image.path == "\(box.pool)/disk.raw")
        try Sample.sh("cmp \(box.path("disk.raw")) \(image.path)")
        #expect(try allocatedBytes(image.path) < UInt64(original.count) / 2 + 65536)
        #expect(image.provenance?.sha256 == (try sha256sum(input)))
        #expect(image.provenance?.format == (compressor.isEmpty ? "raw" : "raw+\(compressor)"))
        #expect(try box.leftovers() == ["disk.raw"] || (try box.leftovers()).allSatisfy { $0.hasPrefix("disk") })
    }

    @Test("raw: compressed qcow2 is detected after decompression and converted")
    func compressedQCOW2() async throws {
        try Privileged.require(.tool("qemu-img"))
        let box = try Sandbox()
        try QCOW2Tests.makeRaw(box.path("src.raw"))
        try Sample.sh("qemu-img convert -c -f raw -O qcow2 \(box.path("src.raw")) \(box.path("a.qcow2")) && xz -k -T2 \(box.path("a.qcow2"))")
        let image = try await Importer.importRaw(from: .file(box.path("a.qcow2.xz")), as: try ImageName(validating: "q"),
                                                 into: box.store, options: ImportOptions())
        try Sample.sh("cmp \(box.path("src.raw")) \(image.path)")
        #expect(image.provenance?.format == "qcow2+xz")
        let plain = try await Importer.importRaw(from: .file(box.path("a.qcow2")), as: try ImageName(validating: "p"),
                                                 into: box.store, options: ImportOptions())
        try Sample.sh("cmp \(box.path("src.raw")) \(plain.path)")
        #expect(plain.provenance?.sha256 == (try sha256sum(box.path("a.qcow2"))))
    }

    @Test("raw: a bomb over --max-size fails and leaves no image and no temporary")
    func bomb() async throws {
        let box = try Sandbox()
        try Sample.sh("head -c 100000000 /dev/zero | xz -c > \(box.path("bomb.raw.xz"))")
        let options = ImportOptions(maximumSize: 10_000_000)
        await #expect {
            _ = try await Importer.importRaw(from: .file(box.path("bomb.raw.xz")), as: try ImageName(validating: "bomb"),
                                             into: box.store, options: options)
        } throws: { error in
            String(describing: error).contains("exceeds the size limit of 10000000 bytes")
        }
        #expect(try box.leftovers().isEmpty)
    }

    @Test("raw: a truncated or corrupt input leaves nothing; a clean retry then succeeds (SECURITY 7)")
    func truncatedThenRetry() async throws {
        let box = try Sandbox()
        try Sample.write(Sample.bytes(2 << 20, seed: 4), to: box.path("d.raw"))
        try Sample.sh("xz -c \(box.path("d.raw")) > \(box.path("d.raw.xz")) && head -c 30000 \(box.path("d.raw.xz")) > \(box.path("cut.xz"))")
        let name = try ImageName(validating: "d")
        await #expect {
            _ = try await Importer.importRaw(from: .file(box.path("cut.xz")), as: name, into: box.store, options: ImportOptions())
        } throws: { error in
            String(describing: error) == "xz stream ends early (truncated input)"
        }
        #expect(try box.leftovers().isEmpty)
        let image = try await Importer.importRaw(from: .file(box.path("d.raw.xz")), as: name, into: box.store, options: ImportOptions())
        try Sample.sh("cmp \(box.path("d.raw")) \(image.path)")
    }

    @Test("tar: hostile archives are refused as a whole, nothing written outside, no image, no temporary (SECURITY 1-4)",
          arguments: [
            ("absolute.tar", "absolute path"),
            ("dotdot.tar", "contains '..'"),
            ("dotdot-deep.tar", "contains '..'"),
            ("symlink-write.tar", "through the symlink x"),
            ("symlink-relative-write.tar", "through the symlink d/up"),
            ("hardlink-absolute.tar", "points outside the tree"),
            ("hardlink-dotdot.tar", "points outside the tree"),
            ("hardlink-via-symlink.tar", "through the symlink s"),
            ("hardlink-directory.tar", "points at a directory"),
            ("deep.tar", "nested 130 levels deep"),
          ])
    func hostileTar(sample: String, message: String) async throws {
        try Privileged.require(.tool("python3"), .tool("qemu-img"))
        let box = try Sandbox()
        try box.makeHostile()
        let passwd = try sha256sum("/etc/passwd")
        await #expect {
            _ = try await Importer.importTar(from: .file(box.path("s/\(sample)")), as: try ImageName(validating: "t"),
                                             into: box.store, options: ImportOptions())
        } throws: { error in
            String(describing: error).contains(message)
        }
        #expect(try box.leftovers().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.outside).isEmpty)
        #expect(try box.strayFiles(besides: []).isEmpty)
        #expect(try sha256sum("/etc/passwd") == passwd)
    }

    @Test("tar: 127 levels deep is still fine")
    func deepButAllowed() async throws {
        try Privileged.require(.tool("python3"), .tool("qemu-img"))
        let box = try Sandbox()
        try box.makeHostile()
        let image = try await Importer.importTar(from: .file(box.path("s/deep-ok.tar")), as: try ImageName(validating: "deep"),
                                                 into: box.store, options: ImportOptions())
        #expect(FileManager.default.fileExists(atPath: image.path + "/" + Array(repeating: "n", count: 127).joined(separator: "/") + "/f"))
    }

    @Test("tar: owners, modes, xattrs, ACLs, hard links, device nodes, fifos, symlinks and mtimes survive",
          arguments: ["", "xz -T2", "gzip", "zstd -q", "bzip2"])
    func tarRoundTrip(compressor: String) async throws {
        try Privileged.require(.root, .tool("setfattr"), .tool("setfacl"))
        let box = try Sandbox()
        let tree = box.path("tree")
        try Sample.sh("""
            set -e; mkdir -p \(tree)/etc \(tree)/dev \(tree)/usr/bin; cd \(tree)
            echo hello > etc/hello; chown 1234:4321 etc/hello; chmod 0640 etc/hello
            echo tool > usr/bin/tool; chmod 4755 usr/bin/tool
            ln usr/bin/tool usr/bin/tool-link
            ln -s ../etc/hello etc/link
            mknod dev/null c 1 3; mknod dev/loop9 b 7 9; mkfifo dev/fifo
            setfattr -n user.x -v value etc/hello
            setfacl -m u:1000:r etc/hello
            touch -d '2001-02-03 04:05:06' etc/hello
            truncate -s 10M usr/bin/sparse; echo end >> usr/bin/sparse
            """)
        try Sample.sh("tar --xattrs --acls --xattrs-include='*' --numeric-owner -C \(tree) -cf \(box.path("t.tar")) .")
        var input = box.path("t.tar")
        if !compressor.isEmpty {
            input = box.path("t.tar.c")
            try Sample.sh("\(compressor) -c \(box.path("t.tar")) > \(input)")
        }
        let image = try await Importer.importTar(from: .file(input), as: try ImageName(validating: "tree"),
                                                 into: box.store, options: ImportOptions())
        let root = image.path
        #expect(try Sample.sh("stat -c '%u:%g %a' \(root)/etc/hello") == "1234:4321 640\n")
        #expect(try Sample.sh("stat -c '%a' \(root)/usr/bin/tool") == "4755\n")
        #expect(try Sample.sh("stat -c '%i' \(root)/usr/bin/tool") == (try Sample.sh("stat -c '%i' \(root)/usr/bin/tool-link")))
        #expect(try Sample.sh("stat -c '%F %t:%T' \(root)/dev/null") == "character special file 1:3\n")
        #expect(try Sample.sh("stat -c '%F %t:%T' \(root)/dev/loop9") == "block special file 7:9\n")
        #expect(try Sample.sh("stat -c '%F' \(root)/dev/fifo") == "fifo\n")
        #expect(try Sample.sh("readlink \(root)/etc/link") == "../etc/hello\n")
        #expect(try Sample.sh("getfattr --only-values -n user.x \(root)/etc/hello") == "value")
        #expect(try Sample.sh("getfacl -n -c \(root)/etc/hello").contains("user:1000:r--"))
        #expect(try Sample.sh("stat -c %Y \(root)/etc/hello") == (try Sample.sh("stat -c %Y \(tree)/etc/hello")))
        try Sample.sh("cmp \(tree)/usr/bin/sparse \(root)/usr/bin/sparse")
        #expect(image.provenance?.sha256 == (try sha256sum(input)))
    }

    @Test("tar: input that is not a tar archive is refused")
    func notATar() async throws {
        let box = try Sandbox()
        try Sample.write(Sample.bytes(1 << 20), to: box.path("x.tar"))
        await #expect {
            _ = try await Importer.importTar(from: .file(box.path("x.tar")), as: try ImageName(validating: "x"),
                                             into: box.store, options: ImportOptions())
        } throws: { error in
            String(describing: error).contains("not a tar archive")
        }
        #expect(try box.leftovers().isEmpty)
    }

    @Test("import-fs copies a tree keeping metadata")
    func directory() async throws {
        try Privileged.require(.root, .tool("setfattr"))
        let box = try Sandbox()
        let tree = box.path("tree")
        try Sample.sh("mkdir -p \(tree)/a && echo x > \(tree)/a/f && chown 7:8 \(tree)/a/f && ln \(tree)/a/f \(tree)/a/g && setfattr -n user.k -v v \(tree)/a/f")
        let image = try await Importer.importDirectory(tree, as: try ImageName(validating: "fs"), into: box.store, options: ImportOptions())
        #expect(try Sample.sh("stat -c '%u:%g %h' \(image.path)/a/f") == "7:8 2\n")
        #expect(try Sample.sh("getfattr --only-values -n user.k \(image.path)/a/f") == "v")
        #expect(image.provenance?.format?.hasPrefix("directory") == true)
    }

    @Test("import-fs snapshots a btrfs subvolume on the pool's file system")
    func btrfsSnapshot() async throws {
        try Privileged.require(.root, .btrfs, .loopDevices, .tool("mkfs.btrfs"), .tool("btrfs"))
        let dir = try TemporaryDirectory(prefix: "imagectl-import-btrfs")
        let mountPoint = dir.appending("mnt")
        try Sample.sh("truncate -s 300M \(dir.appending("fs.img")) && mkfs.btrfs -q \(dir.appending("fs.img")) && mkdir \(mountPoint) && mount -o loop \(dir.appending("fs.img")) \(mountPoint)")
        defer { _ = try? Sample.sh("umount \(mountPoint)") }
        try Sample.sh("btrfs -q subvolume create \(mountPoint)/src && echo data > \(mountPoint)/src/f && chown 5:6 \(mountPoint)/src/f")
        let store = try ImageStore(root: "\(mountPoint)/pool")
        let image = try await Importer.importDirectory("\(mountPoint)/src", as: try ImageName(validating: "snap"), into: store, options: ImportOptions())
        #expect(image.provenance?.format == "directory (btrfs snapshot)")
        // A snapshot has a parent; a copied tree in a fresh subvolume would show "-".
        let parent = try Sample.sh("btrfs subvolume show \(image.path) | awk '/Parent UUID/{print $3}'")
        #expect(parent.trimmingCharacters(in: .whitespacesAndNewlines).count == 36, "parent: \(parent)")
        #expect(try Sample.sh("stat -c '%u:%g' \(image.path)/f") == "5:6\n")
        #expect(try Sample.sh("cat \(image.path)/f") == "data\n")
    }
}
