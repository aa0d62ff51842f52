import Foundation
import Testing
import TestSupport

/// `imagectl run` with .nspawn settings files (systemd.nspawn(5), SECURITY.md 16): each effect is
/// checked from inside the container.
@Suite("imagectl run .nspawn settings", .serialized)
struct RunSettingsCLITests {
    typealias Tree = RunCLITests.Tree

    /// A tree with a machine name of its own (the settings file is found by it).
    static func tree() throws -> (Tree, String) {
        let name = "bbset" + String(UUID().uuidString.prefix(8)).lowercased()
        return (try Tree(name: name), name)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    func run(_ tree: Tree, _ arguments: [String], options: [String] = [], quiet: Bool = true) throws -> Tool.Result {
        try Imagectl.run(["run"] + (quiet ? ["-q"] : []) + ["-D", tree.path] + options + arguments)
    }

    static let plain = """
        [Exec]
        Boot=no
        Parameters=/bin/sh -c "echo $FOO; hostname"
        Environment=FOO=fromfile "BAR=two words"
        Hostname=fromfile
        """

    @Test func aFileBesideTheTreeSetsCommandEnvironmentAndHostname() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        try Self.write(Self.plain, to: tree.scratch.appending(name + ".nspawn"))
        let r = try run(tree, [])
        #expect(r.status == 0)
        #expect(r.stdout == "fromfile\nfromfile\n")
        #expect(try run(tree, ["sh", "-c", "echo \"$BAR\""]).stdout == "two words\n")
    }

    @Test func theCommandLineWinsUnlessOverride() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        try Self.write(Self.plain, to: tree.scratch.appending(name + ".nspawn"))
        let cli = try run(tree, ["sh", "-c", "echo $FOO; hostname"], options: ["--hostname", "cli.example", "-E", "FOO=cli"])
        #expect(cli.stdout == "cli\ncli.example\n")
        // Only what the command line set is masked: the file's host name still applies.
        #expect(try run(tree, ["sh", "-c", "echo $FOO; hostname"], options: ["-E", "FOO=cli"]).stdout == "cli\nfromfile\n")
        let override = try run(tree, ["sh", "-c", "echo never"], options: ["--settings=override", "--hostname", "cli.example", "-E", "FOO=cli"])
        #expect(override.status == 0)
        #expect(override.stdout == "fromfile\nfromfile\n")
        let ignored = try run(tree, ["sh", "-c", "echo ${FOO:-unset}; hostname"], options: ["--settings=no"])
        #expect(ignored.stdout == "unset\n\(name)\n")
    }

    static let privileged = """
        [Exec]
        Boot=no
        Parameters=/bin/sh -c "grep CapBnd /proc/self/status; ls -A /mnt 2>/dev/null | wc -l; grep -c : /proc/net/dev"
        Capability=CAP_SYS_MODULE
        [Files]
        Bind=/etc:/mnt
        [Network]
        Private=yes
        """

    /// (bounding set, entries in /mnt, network interfaces) seen inside.
    static func inside(_ r: Tool.Result) -> (UInt64, Int, Int)? {
        let lines = r.stdout.split(separator: "\n")
        guard lines.count == 3, lines[0].hasPrefix("CapBnd:"),
              let caps = UInt64(lines[0].dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16),
              let entries = Int(lines[1].trimmingCharacters(in: .whitespaces)),
              let interfaces = Int(lines[2]) else { return nil }
        return (caps, entries, interfaces)
    }

    static let sysModule: UInt64 = 1 << 16

    @Test func anUntrustedFileBesideTheTreeGrantsNothing() throws {
        try RunCLITests.requireContainer()
        #expect(RunCLITests.hostBoundingSet() & Self.sysModule != 0)
        let (tree, name) = try Self.tree()
        let path = tree.scratch.appending(name + ".nspawn")
        try Self.write(Self.privileged, to: path)
        let r = try run(tree, [])
        #expect(r.status == 0)
        let seen = try #require(Self.inside(r), "\(r.stdout) \(r.stderr)")
        #expect(seen.0 & Self.sysModule == 0)
        #expect(seen.1 == 0)
        #expect(seen.2 > 1, "the host's interfaces are still there: no private network was made")
        #expect(r.stderr.contains("warning: ignoring Capability=: settings file \(path) is not trusted"))
        #expect(r.stderr.contains("warning: ignoring Bind=, BindReadOnly="))
        #expect(r.stderr.contains("warning: ignoring [Network] settings"))
        // Even with -q (as nspawn): nothing else was printed.
        #expect(r.stderr.split(separator: "\n").count == 3, "\(r.stderr)")
        // systemd-nspawn picks the same file and ignores the same settings.
        if Tool.path("systemd-nspawn") != nil {
            var peer = try Tool.run("systemd-nspawn", ["-q", "--register=no", "--keep-unit", "-D", tree.path])
            peer.stdout = peer.stdout.replacingOccurrences(of: "\r", with: "")
            let theirs = try #require(Self.inside(peer), "\(peer.stdout) \(peer.stderr)")
            // nspawn runs it without a user namespace, where the bounding set cannot exceed the
            // host's; imagectl's default one starts from a full set in its namespace (setns), so
            // compare what both can have.
            let host = RunCLITests.hostBoundingSet()
            #expect(theirs.0 & host == seen.0 & host && theirs.1 == seen.1 && theirs.2 == seen.2)
            #expect(peer.stderr.contains("Ignoring Capability= setting, file \(path) is not trusted."))
        }

        // --settings=trusted trusts the same file.
        let trusted = try run(tree, [], options: ["--settings=trusted"])
        let granted = try #require(Self.inside(trusted), "\(trusted.stdout) \(trusted.stderr)")
        #expect(granted.0 & Self.sysModule != 0)
        #expect(granted.1 > 0)
        #expect(granted.2 == 1, "only lo")
    }

    @Test func theSameFileInEtcSystemdNspawnIsTrusted() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        try FileManager.default.createDirectory(atPath: "/etc/systemd/nspawn", withIntermediateDirectories: true)
        let path = "/etc/systemd/nspawn/\(name).nspawn"
        try Self.write(Self.privileged, to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A file beside the tree loses to the administrator's.
        try Self.write("[Exec]\nHostname=beside\n", to: tree.scratch.appending(name + ".nspawn"))
        let r = try run(tree, [], quiet: false)
        #expect(r.status == 0)
        #expect(!r.stderr.contains("warning:"))
        let seen = try #require(Self.inside(r), "\(r.stdout) \(r.stderr)")
        #expect(seen.0 & Self.sysModule != 0)
        #expect(seen.1 > 0)
        #expect(seen.2 == 1)
        // Options on the command line still win over a trusted file.
        let masked = try run(tree, [], options: ["--drop-capability=CAP_SYS_MODULE", "--bind-ro=/var:/srv"])
        let m = try #require(Self.inside(masked), "\(masked.stdout) \(masked.stderr)")
        #expect(m.0 & Self.sysModule == 0)
        #expect(m.1 == 0)
    }

    /// Denying a call is no privilege: an untrusted file may do it.
    @Test func anUntrustedFileMayDenySystemCalls() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        try Self.write("[Exec]\nSystemCallFilter=~uname\n", to: tree.scratch.appending(name + ".nspawn"))
        // busybox's uname prints an empty name when uname(2) fails (EPERM from the filter).
        let denied = try run(tree, ["uname", "-s"])
        #expect(denied.stdout == "\n")
        #expect(try run(tree, ["uname", "-s"], options: ["--settings=no"]).stdout == "Linux\n")
        // The command line's own filter masks the file's.
        #expect(try run(tree, ["uname", "-s"], options: ["--system-call-filter=~@clock"]).stdout == "Linux\n")
    }

    /// PrivateUsers= is privileged (it picks host IDs): only a trusted file gets a user namespace.
    @Test func privateUsersNeedsATrustedFile() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        let path = tree.scratch.appending(name + ".nspawn")
        try Self.write("[Exec]\nPrivateUsers=identity\n", to: path)
        let map = ["sh", "-c", "cat /proc/self/uid_map | tr -s ' '"]
        // Ignored: the default user namespace (a picked range, not the file's identity map).
        let untrusted = try run(tree, map)
        let fields = untrusted.stdout.split(separator: " ").compactMap { UInt32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(fields.count == 3 && fields[0] == 0 && fields[1] >= 0x80000 && fields[2] == 65536, "\(untrusted.stdout)")
        #expect(untrusted.stderr.contains("warning: ignoring PrivateUsers= and PrivateUsersOwnership=: settings file \(path) is not trusted"))
        let trusted = try run(tree, map, options: ["--settings=trusted"])
        #expect(trusted.stdout == " 0 0 65536\n", "\(trusted.stderr)")
        // The command line's --private-users= masks the file's.
        #expect(try run(tree, map, options: ["--settings=trusted", "--private-users=no"]).stdout == " 0 0 4294967295\n")
    }

    @Test func aMalformedFileIsOneErrorAndNothingRuns() throws {
        try RunCLITests.requireContainer()
        let (tree, name) = try Self.tree()
        let path = tree.scratch.appending(name + ".nspawn")
        try Self.write("[Exec]\nHostname=ok\nBoot=perhaps\n", to: path)
        let r = try run(tree, ["sh", "-c", "touch /ran"])
        #expect(r.status == 1 || r.status == 2)
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.contains("\(path):3"))
        #expect(r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tree.path + "/ran"))
        // An unknown key is only a warning.
        try Self.write("[Exec]\nNoSuchKey=1\nPivotRoot=/x\n", to: path)
        let w = try run(tree, ["true"], quiet: false)
        #expect(w.status == 0)
        #expect(w.stderr.contains("warning: \(path):2: unknown key NoSuchKey="))
        #expect(w.stderr.contains("warning: \(path):3: ignoring PivotRoot= (not supported by imagectl)"))
    }

    @Test func aStoreImageUsesTheFileBesideItInThePool() throws {
        try RunCLITests.requireContainer()
        try Privileged.require(.fixture("bare-ext4.raw"))
        let pool = try TemporaryDirectory(prefix: "settings-pool")
        let name = "bbpool" + String(UUID().uuidString.prefix(8)).lowercased()
        let copy = try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", pool.appending(name)])
        #expect(copy.status == 0)
        try Self.write("[Exec]\nHostname=pooled\nEnvironment=FROM=pool\n", to: pool.appending(name + ".nspawn"))
        let r = try Imagectl.run(["run", "-q", "-M", name, "sh", "-c", "echo $FROM; hostname"], root: pool.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "pool\npooled\n")

        // A raw image: NAME.nspawn beside NAME.raw, for -M and for -i alike (ReadOnly= from the
        // file also applies before the image is mounted).
        let ext4 = try #require(Fixtures.path("bare-ext4.raw"))
        let disk = "bbdisk" + String(UUID().uuidString.prefix(8)).lowercased()
        #expect(try Tool.run("cp", [ext4, pool.appending(disk + ".raw")]).status == 0)
        try Self.write("[Exec]\nHostname=fromraw\n[Files]\nReadOnly=yes\n", to: pool.appending(disk + ".nspawn"))
        let byName = try Imagectl.run(["run", "-q", "-M", disk, "sh", "-c", "hostname; touch /x 2>/dev/null || echo ro"], root: pool.path)
        #expect(byName.stdout == "fromraw\nro\n", "\(byName.stderr)")
        let byPath = try Imagectl.run(["run", "-q", "-i", pool.appending(disk + ".raw"), "hostname"])
        #expect(byPath.stdout == "fromraw\n", "\(byPath.stderr)")
    }
}
