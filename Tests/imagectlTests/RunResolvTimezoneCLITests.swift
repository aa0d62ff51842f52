import Foundation
import Testing
import TestSupport

/// `imagectl run --resolv-conf= --timezone=`: what the payload sees in /etc/resolv.conf and
/// /etc/localtime for each mode, what is left in the tree afterwards, and that a symlink in the
/// image cannot make a copy write onto the host. Every test runs on its own copy of busybox-tree.
@Suite("imagectl run: --resolv-conf and --timezone", .serialized)
struct RunResolvTimezoneCLITests {
    struct Failure: Error { var text: String }

    static func tree(_ scratch: TemporaryDirectory) throws -> String {
        let target = scratch.appending("tree")
        let r = try Tool.run("cp", ["-a", "\(Fixtures.directory)/busybox-tree", target])
        guard r.status == 0 else { throw Failure(text: r.stderr) }
        return target
    }

    static func hostFile(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    /// `imagectl run -D tree OPTIONS sh -c SCRIPT` with a unique machine name.
    static func run(_ tree: String, _ options: [String], _ script: String, quiet: Bool = true) throws -> Tool.Result {
        let name = "rtz-" + UUID().uuidString.prefix(8).lowercased()
        return try Imagectl.run(["run"] + (quiet ? ["-q"] : []) + ["-D", tree, "-M", name] + options + ["sh", "-c", script])
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    static func isSymlink(_ path: String) -> Bool {
        (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeSymbolicLink
    }

    static func exists(_ path: String) -> Bool {
        isSymlink(path) || FileManager.default.fileExists(atPath: path)
    }

    static let imageResolvConf = "nameserver 192.0.2.1\n"
    static let writeProbe = "cat /etc/resolv.conf; echo '# x' >> /etc/resolv.conf && echo WROTE"

    // MARK: --resolv-conf

    @Test(arguments: ["copy-host", "replace-host"])
    func copyModesWriteTheHostFileIntoTheTree(mode: String) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let r = try Self.run(tree, ["--resolv-conf=\(mode)", "--timezone=off"], "cat /etc/resolv.conf")
        #expect(r.status == 0, "\(r.stderr)")
        let host = try Self.hostFile("/etc/resolv.conf")
        #expect(r.stdout == host)
        // A copy, not a mount: it stays in the tree.
        #expect(try Self.hostFile("\(tree)/etc/resolv.conf") == host)
        #expect(!Self.isSymlink("\(tree)/etc/resolv.conf"))
    }

    @Test(arguments: ["copy-static", "replace-static", "bind-static"])
    func staticModesUseResolvedsStaticFile(mode: String) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let r = try Self.run(tree, ["--resolv-conf=\(mode)", "--timezone=off"], "cat /etc/resolv.conf", quiet: false)
        #expect(r.status == 0, "\(r.stderr)")
        if let staticFile = try? Self.hostFile("/usr/lib/systemd/resolv.conf") {
            #expect(r.stdout == staticFile)
            #expect(!r.stderr.contains("warning:"))
        } else {
            #expect(r.stdout == Self.imageResolvConf)
            #expect(r.stderr.contains("warning: --resolv-conf=\(mode): /usr/lib/systemd/resolv.conf does not exist"))
        }
    }

    @Test func bindHostShowsTheHostFileReadOnly() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let r = try Self.run(tree, ["--resolv-conf=bind-host", "--timezone=off"], Self.writeProbe)
        let host = try Self.hostFile("/etc/resolv.conf")
        #expect(r.stdout == host, "\(r.stderr)")
        #expect(r.stderr.contains("Read-only file system"))
        // Only mounted over: the image's own file is unchanged underneath.
        #expect(try Self.hostFile("\(tree)/etc/resolv.conf") == Self.imageResolvConf)
        #expect(try Self.hostFile("/etc/resolv.conf") == host)
    }

    /// No systemd-resolved on the host: its uplink and stub files are missing, so these modes
    /// warn and leave the image's file as it is (nspawn also only warns).
    @Test(arguments: ["copy-uplink", "copy-stub", "replace-uplink", "replace-stub", "bind-uplink", "bind-stub"])
    func resolvedFilesMissingOnTheHostLeaveTheFileAlone(mode: String) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let source = mode.hasSuffix("uplink") ? "/run/systemd/resolve/resolv.conf" : "/run/systemd/resolve/stub-resolv.conf"
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let r = try Self.run(tree, ["--resolv-conf=\(mode)", "--timezone=off"], "cat /etc/resolv.conf", quiet: false)
        #expect(r.status == 0, "\(r.stderr)")
        if let content = try? Self.hostFile(source) {
            #expect(r.stdout == content)  // a host that does run systemd-resolved
        } else {
            #expect(r.stdout == Self.imageResolvConf)
            #expect(r.stderr.contains("warning: --resolv-conf=\(mode): \(source) does not exist or cannot be read on the host (systemd-resolved is not running)"))
            #expect(try Self.hostFile("\(tree)/etc/resolv.conf") == Self.imageResolvConf)
        }
    }

    @Test func deleteRemovesAndOffKeeps() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let off = try Self.run(tree, ["--resolv-conf=off", "--timezone=off"], "cat /etc/resolv.conf")
        #expect(off.stdout == Self.imageResolvConf, "\(off.stderr)")
        let deleted = try Self.run(tree, ["--resolv-conf=delete", "--timezone=off"], "test -e /etc/resolv.conf && echo present || echo gone")
        #expect(deleted.stdout == "gone\n", "\(deleted.stderr)")
        #expect(!Self.exists("\(tree)/etc/resolv.conf"))
    }

    @Test func autoCopiesIntoAWritableTreeBindsIntoAReadOnlyOneAndIsOffWithAPrivateNetwork() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        let host = try Self.hostFile("/etc/resolv.conf")
        let resolvedRuns = FileManager.default.fileExists(atPath: "/run/systemd/resolve/stub-resolv.conf")
        let expected = resolvedRuns ? try Self.hostFile("/usr/lib/systemd/resolv.conf") : host

        // Private network: the image's file as it is.
        try Self.write(Self.imageResolvConf, to: "\(tree)/etc/resolv.conf")
        let privateNet = try Self.run(tree, ["--private-network", "--timezone=off"], "cat /etc/resolv.conf")
        #expect(privateNet.stdout == Self.imageResolvConf, "\(privateNet.stderr)")

        // Read-only tree: bound, not writable, the tree untouched.
        let readOnly = try Self.run(tree, ["--read-only", "--timezone=off"], Self.writeProbe)
        #expect(readOnly.stdout == expected, "\(readOnly.stderr)")
        #expect(readOnly.stderr.contains("Read-only file system"))
        #expect(try Self.hostFile("\(tree)/etc/resolv.conf") == Self.imageResolvConf)

        // Writable (the default mode is auto): a copy the container may change.
        let writable = try Self.run(tree, ["--timezone=off"], Self.writeProbe)
        #expect(writable.stdout == expected + "WROTE\n", "\(writable.stderr)")
        #expect(try Self.hostFile("\(tree)/etc/resolv.conf") == expected + "# x\n")
        #expect(try Self.hostFile("/etc/resolv.conf") == host)
    }

    @Test func ephemeralCopiesGoIntoTheThrowAwayLayer() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        let r = try Self.run(tree, ["-x", "--resolv-conf=copy-host", "--timezone=copy"],
                             "cat /etc/resolv.conf; test -f /etc/localtime && echo localtime")
        #expect(r.stdout == (try Self.hostFile("/etc/resolv.conf")) + "localtime\n", "\(r.stderr)")
        #expect(!Self.exists("\(tree)/etc/resolv.conf"))
        #expect(!Self.exists("\(tree)/etc/localtime"))
    }

    /// The image's /etc/resolv.conf is a symlink to a file on the host (absolute, and relative
    /// with enough ".." to leave any root): copy-* leaves the link, replace-* replaces it inside
    /// the tree, bind-* mounts nothing onto the host; the host file is never written.
    @Test(arguments: ["copy-host", "replace-host", "bind-host", "copy-static", "replace-static"])
    func aSymlinkToTheHostIsNotWrittenThrough(mode: String) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        let outside = scratch.appending("host-secret")
        try Self.write("sentinel\n", to: outside)
        for linkText in [outside, "../../../../../../../../.." + outside] {
            let link = "\(tree)/etc/resolv.conf"
            try? FileManager.default.removeItem(atPath: link)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: linkText)
            let r = try Self.run(tree, ["--resolv-conf=\(mode)", "--timezone=off"], "cat /etc/resolv.conf 2>/dev/null; true")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try Self.hostFile(outside) == "sentinel\n")
            #expect(!r.stdout.contains("sentinel"))
            if mode.hasPrefix("replace") {
                #expect(!Self.isSymlink(link))
                #expect(try Self.hostFile(link) == (try Self.hostFile(mode == "replace-host" ? "/etc/resolv.conf" : "/usr/lib/systemd/resolv.conf")))
            } else {
                #expect(Self.isSymlink(link))
                #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == linkText)
            }
        }
    }

    /// A symlinked /etc pointing at a host directory: the copy lands beneath the root.
    @Test func aSymlinkedEtcDirectoryStaysInsideTheRoot() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-resolv")
        let tree = try Self.tree(scratch)
        let hostDirectory = scratch.appending("host-etc")
        try FileManager.default.createDirectory(atPath: hostDirectory, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: "\(tree)/etc", toPath: "\(tree)/etc.real")
        try FileManager.default.createSymbolicLink(atPath: "\(tree)/etc", withDestinationPath: hostDirectory)
        // Inside the root the link is dangling, so there is no /etc to write into: nothing happens.
        let r = try Self.run(tree, ["--resolv-conf=replace-host", "--timezone=copy"], "true")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: hostDirectory).isEmpty)
    }

    // MARK: --timezone

    /// The host's zone from its /etc/localtime link ("Etc/UTC" on this machine).
    static func hostZone() throws -> String {
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/etc/localtime")
        for prefix in ["/usr/share/zoneinfo/", "../usr/share/zoneinfo/"] where link.hasPrefix(prefix) {
            return String(link.dropFirst(prefix.count))
        }
        throw Failure(text: "host /etc/localtime points to \(link)")
    }

    static func md5(_ path: String) throws -> String {
        String(try Tool.run("md5sum", [path]).stdout.prefix(32))
    }

    /// Puts the host's zone file into the tree's /usr/share/zoneinfo.
    static func addZone(_ zone: String, to tree: String) throws {
        let target = "\(tree)/usr/share/zoneinfo/\(zone)"
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/usr/share/zoneinfo/\(zone)", toPath: target)
    }

    @Test func symlinkPointsAtTheHostsZoneInsideTheImage() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let zone = try Self.hostZone()
        let scratch = try TemporaryDirectory(prefix: "run-tz")
        let tree = try Self.tree(scratch)
        try Self.addZone(zone, to: tree)
        for options in [["--timezone=symlink"], []] {  // auto on a writable tree: symlink too
            try? FileManager.default.removeItem(atPath: "\(tree)/etc/localtime")
            try Self.write("not a zone", to: "\(tree)/etc/localtime")
            let r = try Self.run(tree, ["--resolv-conf=off"] + options, "busybox readlink /etc/localtime; busybox md5sum /etc/localtime")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "../usr/share/zoneinfo/\(zone)\n\(try Self.md5("/etc/localtime"))  /etc/localtime\n", "\(options)")
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(tree)/etc/localtime")) == "../usr/share/zoneinfo/\(zone)")
        }
    }

    /// Without the zone file in the image, symlink falls back to a read-only bind of the host file
    /// (as nspawn's does); auto on a read-only tree binds.
    @Test(arguments: [["--timezone=symlink"], ["--timezone=bind"], ["--read-only"]])
    func bindShowsTheHostFileReadOnly(options: [String]) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-tz")
        let tree = try Self.tree(scratch)
        if options == ["--read-only"] { try Self.addZone(try Self.hostZone(), to: tree) }
        try Self.write("image zone", to: "\(tree)/etc/localtime")
        let r = try Self.run(tree, ["--resolv-conf=off"] + options,
                             "busybox md5sum /etc/localtime; echo x >> /etc/localtime && echo WROTE")
        #expect(r.stdout == "\(try Self.md5("/etc/localtime"))  /etc/localtime\n", "\(r.stderr)")
        #expect(r.stderr.contains("Read-only file system"))
        #expect(try Self.hostFile("\(tree)/etc/localtime") == "image zone")
    }

    @Test func copyWritesTheHostFileAndDeleteRemovesIt() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-tz")
        let tree = try Self.tree(scratch)
        // A symlink out to a host file: copy replaces the link in the tree (nspawn's COPY_REPLACE).
        let outside = scratch.appending("host-zone")
        try Self.write("sentinel", to: outside)
        try FileManager.default.createSymbolicLink(atPath: "\(tree)/etc/localtime", withDestinationPath: outside)
        let copy = try Self.run(tree, ["--resolv-conf=off", "--timezone=copy"], "busybox md5sum /etc/localtime")
        #expect(copy.stdout == "\(try Self.md5("/etc/localtime"))  /etc/localtime\n", "\(copy.stderr)")
        #expect(!Self.isSymlink("\(tree)/etc/localtime"))
        #expect(try Self.md5("\(tree)/etc/localtime") == (try Self.md5("/etc/localtime")))
        #expect(try Self.hostFile(outside) == "sentinel")
        let off = try Self.run(tree, ["--resolv-conf=off", "--timezone=off"], "test -L /etc/localtime && echo link || echo file")
        #expect(off.stdout == "file\n", "\(off.stderr)")
        let deleted = try Self.run(tree, ["--resolv-conf=off", "--timezone=delete"], "test -e /etc/localtime && echo present || echo gone")
        #expect(deleted.stdout == "gone\n", "\(deleted.stderr)")
        #expect(!Self.exists("\(tree)/etc/localtime"))
    }

    @Test func badModesAreUsageErrors() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-tz")
        let tree = try Self.tree(scratch)
        let resolv = try Imagectl.run(["run", "-D", tree, "--resolv-conf=copy", "true"])
        #expect(resolv.status == 2)
        #expect(resolv.stderr.contains("invalid --resolv-conf mode 'copy'"))
        let tz = try Imagectl.run(["run", "-D", tree, "--timezone=host", "true"])
        #expect(tz.status == 2)
        #expect(tz.stderr.contains("invalid --timezone mode 'host'"))
        #expect(!Self.exists("\(tree)/etc/resolv.conf"))
    }
}
