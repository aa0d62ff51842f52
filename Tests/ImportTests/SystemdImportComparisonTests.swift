import Foundation
import Testing
import TestSupport

/// imagectl's import against Debian's systemd-import (252) on the same fixtures, each into a pool
/// of its own: raw results must be byte-identical and allocate no more blocks than the peer's;
/// tar results must be the same tree (paths, types, modes, owners, sizes, contents, symlink
/// targets, device numbers, hard links, mtimes of non-directories, xattrs and ACLs).
@Suite(.serialized) struct SystemdImportComparisonTests {
    static let peer = "/lib/systemd/systemd-import"

    // MARK: raw

    /// (imagectl's input, systemd-import's input). Where Debian's systemd-import 252 cannot read a
    /// format (zstd: it imports a .raw.zst as the compressed bytes, and refuses qcow2 with zstd
    /// clusters), it imports the uncompressed source instead and the results must still match.
    static let rawPairs: [(String, String)] = [
        ("bare-ext4.raw.xz", "bare-ext4.raw.xz"),
        ("bare-ext4.raw.gz", "bare-ext4.raw.gz"),
        ("bare-ext4.raw.bz2", "bare-ext4.raw.bz2"),
        ("bare-ext4.raw.zst", "bare-ext4.raw"),
        ("bare-ext4.qcow2", "bare-ext4.qcow2"),
        ("bare-ext4-zlib.qcow2", "bare-ext4-zlib.qcow2"),
        ("bare-ext4-zstd.qcow2", "bare-ext4.raw"),
        ("gpt-verity.raw", "gpt-verity.raw"),
        ("multiblock.raw.xz", "multiblock.raw.xz"),
    ]

    @Test(arguments: rawPairs)
    func rawImportMatchesSystemdImport(ours fixture: String, peer peerFixture: String) throws {
        try Privileged.require(.root, .tool(Self.peer), .tool("getfattr"), .fixture(fixture), .fixture(peerFixture))
        let input = try #require(Fixtures.path(fixture))
        let peerInput = try #require(Fixtures.path(peerFixture))
        let work = try TemporaryDirectory(prefix: "imagectl-vs-systemd-raw", under: "/var/tmp")
        let ours = work.appending("imagectl"), theirs = work.appending("systemd")

        let run = try Imagectl.run(["import-raw", input, "cmp"], root: ours)
        #expect(run.status == 0, "imagectl import-raw: \(run.stderr)")
        let peer = try Tool.run(Self.peer, ["raw", peerInput, "cmp", "--image-root=\(theirs)", "--sync=no"])
        try #require(peer.status == 0, "systemd-import raw: \(peer.stderr)")

        let ourImage = "\(ours)/cmp.raw", theirImage = "\(theirs)/cmp.raw"
        try #require(FileManager.default.fileExists(atPath: ourImage), "imagectl left no \(ourImage)")
        let cmp = try Tool.run("cmp", [ourImage, theirImage])
        #expect(cmp.status == 0, "results differ: \(cmp.stdout)\(cmp.stderr)")

        // Allocated bytes: no more than the peer's (PERFORMANCE.md).
        let ourBlocks = try allocatedBytes(ourImage), theirBlocks = try allocatedBytes(theirImage)
        #expect(ourBlocks <= theirBlocks, "imagectl allocates \(ourBlocks) bytes, systemd-import \(theirBlocks)")
    }

    /// Both tools must reproduce the uncompressed source exactly, not merely agree with each other.
    @Test func rawImportOfQcow2EqualsTheSourceImage() throws {
        try Privileged.require(.root, .fixture("bare-ext4-zstd.qcow2"), .fixture("bare-ext4.raw"))
        let input = try #require(Fixtures.path("bare-ext4-zstd.qcow2"))
        let source = try #require(Fixtures.path("bare-ext4.raw"))
        let work = try TemporaryDirectory(prefix: "imagectl-qcow2", under: "/var/tmp")
        let run = try Imagectl.run(["import-raw", input, "fromqcow"], root: work.path)
        #expect(run.status == 0, "imagectl import-raw: \(run.stderr)")
        let cmp = try Tool.run("cmp", [work.appending("fromqcow.raw"), source])
        #expect(cmp.status == 0, "qcow2 conversion differs from the source: \(cmp.stdout)\(cmp.stderr)")
    }

    // MARK: tar

    /// (imagectl's input, systemd-import's input): Debian's GNU tar behind systemd-import 252
    /// cannot read zstd ("Archive is compressed. Use --zstd option"), so the peer gets the plain tar.
    static let tarPairs: [(String, String)] = [
        ("busybox.tar.xz", "busybox.tar.xz"),
        ("busybox.tar.gz", "busybox.tar.gz"),
        ("busybox.tar.bz2", "busybox.tar.bz2"),
        ("busybox.tar.zst", "busybox.tar"),
        ("busybox.tar", "busybox.tar"),
        ("debian.tar.xz", "debian.tar.xz"),
    ]

    @Test(arguments: tarPairs)
    func tarImportMatchesSystemdImport(ours fixture: String, peer peerFixture: String) throws {
        try Privileged.require(.root, .tool(Self.peer), .tool("getfattr"), .fixture(fixture), .fixture(peerFixture))
        let input = try #require(Fixtures.path(fixture))
        let peerInput = try #require(Fixtures.path(peerFixture))
        let work = try TemporaryDirectory(prefix: "imagectl-vs-systemd-tar", under: "/var/tmp")
        let ours = work.appending("imagectl"), theirs = work.appending("systemd")

        let run = try Imagectl.run(["import-tar", input, "cmp"], root: ours)
        #expect(run.status == 0, "imagectl import-tar: \(run.stderr)")
        let peer = try Tool.run(Self.peer, ["tar", peerInput, "cmp", "--image-root=\(theirs)", "--sync=no"])
        try #require(peer.status == 0, "systemd-import tar: \(peer.stderr)")

        let ourTree = "\(ours)/cmp", theirTree = "\(theirs)/cmp"
        try #require(FileManager.default.fileExists(atPath: "\(ourTree)/etc/os-release"),
                     "imagectl's tree has no etc/os-release")
        let a = try TreeSnapshot(ourTree)
        let b = try TreeSnapshot(theirTree)
        #expect(a.entries.count > 10)
        let onlyOurs = Set(a.entries.keys).subtracting(b.entries.keys).sorted()
        let onlyTheirs = Set(b.entries.keys).subtracting(a.entries.keys).sorted()
        #expect(onlyOurs.isEmpty, "only in imagectl's tree: \(onlyOurs.prefix(20))")
        #expect(onlyTheirs.isEmpty, "only in systemd-import's tree: \(onlyTheirs.prefix(20))")

        var differing: [String] = []
        for (path, entry) in a.entries.sorted(by: { $0.key < $1.key }) {
            guard let other = b.entries[path], other != entry else { continue }
            differing.append("\(path): imagectl \(entry) / systemd-import \(other)")
        }
        #expect(differing.isEmpty, "\(differing.count) entries differ, e.g.\n\(differing.prefix(10).joined(separator: "\n"))")
        #expect(a.hardLinkGroups == b.hardLinkGroups, "hard links differ")
        #expect(a.xattrs == b.xattrs, "xattrs differ: \(xattrDifference(a.xattrs, b.xattrs))")
    }

    /// The busybox fixture carries one of each special kind; check imagectl kept them (and that
    /// the comparison above therefore compared something).
    @Test func tarImportKeepsTheSpecialFilesOfTheFixture() throws {
        try Privileged.require(.root, .tool("getfattr"), .fixture("busybox.tar.xz"))
        let input = try #require(Fixtures.path("busybox.tar.xz"))
        let work = try TemporaryDirectory(prefix: "imagectl-tar-special", under: "/var/tmp")
        let run = try Imagectl.run(["import-tar", input, "bb"], root: work.path)
        try #require(run.status == 0, "imagectl import-tar: \(run.stderr)")
        let tree = try TreeSnapshot(work.appending("bb"))
        let e = tree.entries
        #expect(e["special/setuid"]?.mode == "4755")
        #expect(e["special/setgid"]?.mode == "2755")
        #expect(e["special/sticky-dir"]?.mode == "1777")
        #expect(e["special/owned"]?.owner == "1000:1000")
        #expect(e["special/fifo"]?.type == "p")
        #expect(e["special/null"]?.type == "c" && e["special/null"]?.device == "1:3")
        #expect(e["special/loop0"]?.type == "b" && e["special/loop0"]?.device == "7:0")
        #expect(e["special/symlink"]?.linkTarget == "../etc/os-release")
        #expect(e["special/sparse"]?.size == 4 * 1024 * 1024)
        #expect(tree.hardLinkGroups.contains(["special/hardlink-a", "special/hardlink-b"]))
        #expect(tree.xattrs["special/xattr"]?.contains("user.imagectl=0x66697874757265") == true)
        #expect(tree.xattrs["special/acl"]?.contains { $0.hasPrefix("system.posix_acl_access=") } == true)
    }

    // MARK: helpers

    private func allocatedBytes(_ path: String) throws -> Int {
        // systemd-import ran with --sync=no: flush first, so both files are counted as they will
        // lie on disk rather than with delayed allocation still pending.
        try Tool.run("sync", ["--file-system", path])
        let result = try Tool.run("stat", ["-c", "%b %B", path])
        let fields = result.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard result.status == 0, fields.count == 2 else {
            throw ComparisonError(text: "stat \(path): \(result.stderr)")
        }
        return fields[0] * fields[1]
    }

    private func xattrDifference(_ a: [String: Set<String>], _ b: [String: Set<String>]) -> String {
        let paths = Set(a.keys).union(b.keys).sorted().filter { a[$0] != b[$0] }
        return paths.prefix(5).map { "\($0): \(a[$0] ?? []) vs \(b[$0] ?? [])" }.joined(separator: "; ")
    }
}

struct ComparisonError: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

/// What a user would compare between two extracted trees, gathered with find, stat, sha256sum and
/// getfattr (the same tools a person would reach for), keyed by path relative to the tree's root.
struct TreeSnapshot {
    struct Entry: Equatable, CustomStringConvertible {
        var type: String        // find %y: f d l p c b s
        var mode: String        // octal permission bits with setuid/setgid/sticky, e.g. 4755
        var owner: String       // uid:gid
        var size: Int?          // regular files and symlinks only (directory sizes are fs-specific)
        var mtime: String?      // non-directories only (seconds since the epoch, with fraction)
        var linkTarget: String?
        var device: String?     // major:minor of device nodes
        var sha256: String?     // regular files

        var description: String {
            [type, mode, owner, size.map(String.init), mtime, linkTarget.map { "-> \($0)" }, device, sha256.map { String($0.prefix(12)) }]
                .compactMap { $0 }.joined(separator: " ")
        }
    }

    var entries: [String: Entry] = [:]
    /// Sets of paths that share an inode (regular files with more than one link).
    var hardLinkGroups: Set<Set<String>> = []
    /// Path -> "name=0xHEX" lines, every namespace (user, trusted, security, system ACLs).
    var xattrs: [String: Set<String>] = [:]

    init(_ root: String) throws {
        let list = try Self.shell("cd \"$1\" && find . -printf '%P\\0%y\\0%m\\0%U:%G\\0%s\\0%T@\\0%l\\0%i\\0%n\\0'", root)
        let fields = list.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        var inodes: [String: Set<String>] = [:]
        var index = 0
        while index + 9 <= fields.count {
            let f = Array(fields[index..<index + 9])
            index += 9
            let path = f[0].isEmpty ? "." : f[0]
            let type = f[1]
            var entry = Entry(type: type, mode: f[2], owner: f[3])
            if type == "f" || type == "l" { entry.size = Int(f[4]) }
            if type != "d" { entry.mtime = f[5] }
            if type == "l" { entry.linkTarget = f[6] }
            if type == "f", let links = Int(f[8]), links > 1 { inodes[f[7], default: []].insert(path) }
            entries[path] = entry
        }
        hardLinkGroups = Set(inodes.values)

        let devices = try Self.shell("cd \"$1\" && find . \\( -type b -o -type c \\) -exec stat --printf '%n\\0%t\\0%T\\0' {} +", root)
        let deviceFields = devices.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        var d = 0
        while d + 3 <= deviceFields.count {
            let path = String(deviceFields[d].dropFirst(2))  // "./x" -> "x"
            if let major = Int(deviceFields[d + 1], radix: 16), let minor = Int(deviceFields[d + 2], radix: 16) {
                entries[path]?.device = "\(major):\(minor)"
            }
            d += 3
        }

        let sums = try Self.shell("cd \"$1\" && find . -type f -print0 | xargs -0r sha256sum --zero", root)
        for record in sums.split(separator: 0) {
            let line = String(decoding: record, as: UTF8.self)
            guard let space = line.firstIndex(of: " ") else { continue }
            let hash = String(line[..<space])
            var path = String(line[space...].dropFirst(2))  // "<hash>  ./path"
            if path.hasPrefix("./") { path.removeFirst(2) }
            entries[path]?.sha256 = hash
        }

        // getfattr walks in directory order, so collect per path and compare as sets.
        let dump = try Self.shell("cd \"$1\" && getfattr -R -h -d -m - -e hex . 2>/dev/null || true", root)
        var current: String?
        for line in String(decoding: dump, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# file: ") {
                var path = String(line.dropFirst("# file: ".count))
                if path.hasPrefix("./") { path.removeFirst(2) }
                current = path
            } else if let current, line.contains("=") {
                xattrs[current, default: []].insert(String(line))
            }
        }
    }

    private static func shell(_ script: String, _ argument: String) throws -> Data {
        let result = try Tool.run("/bin/sh", ["-c", script, "sh", argument])
        guard result.status == 0 else {
            throw ComparisonError(text: "\(script): exit \(result.status): \(result.stderr)")
        }
        return result.stdoutData
    }
}
