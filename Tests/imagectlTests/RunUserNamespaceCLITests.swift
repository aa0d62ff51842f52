import Foundation
import Testing
import TestSupport

/// `imagectl run --private-users= --private-users-ownership= -U`: the maps seen inside, who owns
/// the tree and new files on the host (chown shifts the tree once; map leaves the disk alone), the
/// range reservation, `imagectl shell` joining the namespace, and a booted OS.
@Suite("imagectl run: user namespaces", .serialized)
struct RunUserNamespaceCLITests {
    struct Failure: Error { var text: String }

    static func unique() -> String { "uns-" + UUID().uuidString.prefix(8).lowercased() }

    /// A private copy of a fixture tree (chown changes it).
    static func copy(_ fixture: String, to directory: TemporaryDirectory) throws -> String {
        let target = directory.appending(fixture)
        let r = try Tool.run("cp", ["-a", "\(Fixtures.directory)/\(fixture)", target])
        guard r.status == 0 else { throw Failure(text: r.stderr) }
        return target
    }

    static func owner(_ path: String) throws -> String {
        try Tool.run("stat", ["-c", "%u:%g", path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// "0 BASE SIZE" of /proc/self/uid_map's first line, as numbers.
    static func map(_ text: String) -> [UInt64] {
        text.split(separator: "\n").first.map { $0.split(separator: " ").compactMap { UInt64($0) } } ?? []
    }

    @Test func pickMapsTheRootWithAnIDMappedMountAndLeavesTheDiskAlone() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let r = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "-U", "--",
                                  "/bin/sh", "-c", "cat /proc/self/uid_map; cat /proc/self/gid_map; stat -c %u:%g / /etc/passwd; touch /made-inside; stat -c %u:%g /made-inside"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 5, "\(r.stdout)")
        let uidMap = Self.map(lines[0])
        #expect(uidMap.count == 3 && uidMap[0] == 0 && uidMap[2] == 65536)
        // nspawn's pick range, 64K-aligned, and the same range for groups.
        let base = uidMap.count == 3 ? uidMap[1] : 0
        #expect(base >= 0x0008_0000 && base <= 0x6FFE_0000 && base % 65536 == 0)
        #expect(Self.map(lines[1]) == uidMap)
        // Root-owned files of the image are root's inside, and a new file is root's on the disk.
        #expect(lines[2] == "0:0" && lines[3] == "0:0" && lines[4] == "0:0")
        #expect(try Self.owner(tree) == "0:0")
        #expect(try Self.owner(tree + "/made-inside") == "0:0")
    }

    @Test func chownShiftsTheTreeOnceAndKeepsSetuidBitsACLsAndFileCapabilities() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("setfacl"), .tool("setcap"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let base: UInt32 = 0x0030_0000
        #expect(try Tool.run("cp", [tree + "/bin/busybox", tree + "/bin/suid"]).status == 0)
        #expect(try Tool.run("chmod", ["4755", tree + "/bin/suid"]).status == 0)
        #expect(FileManager.default.createFile(atPath: tree + "/owned", contents: Data()))
        #expect(try Tool.run("chown", ["1000:100", tree + "/owned"]).status == 0)
        #expect(try Tool.run("setfacl", ["-m", "u:1000:rwx", tree + "/etc"]).status == 0)
        #expect(try Tool.run("setcap", ["cap_net_raw+ep", tree + "/bin/busybox"]).status == 0)
        let machine = Self.unique()
        let args = ["run", "-D", tree, "-M", machine, "-q", "--private-users=\(base)", "--private-users-ownership=chown", "--"]
        let r = try Imagectl.run(args + ["/bin/sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g / /owned; touch /made-inside"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.map(r.stdout) == [0, UInt64(base), 65536])
        #expect(r.stdout.contains("\n0:0\n1000:100\n"))
        // On the host: shifted by the base, the new file too.
        #expect(try Self.owner(tree) == "\(base):\(base)")
        #expect(try Self.owner(tree + "/owned") == "\(base + 1000):\(base + 100)")
        #expect(try Self.owner(tree + "/made-inside") == "\(base):\(base)")
        #expect(try Tool.run("stat", ["-c", "%a", tree + "/bin/suid"]).stdout.hasPrefix("4755"))
        #expect(try Tool.run("getfacl", ["-n", tree + "/etc"]).stdout.contains("user:\(base + 1000):rwx"))
        let caps = try Tool.run("getcap", [tree + "/bin/busybox"]).stdout
        #expect(caps.contains("cap_net_raw=ep"), "\(caps)")
        // A second run finds the tree shifted already: nothing changes (a file changed on the
        // host since keeps its owner).
        #expect(try Tool.run("chown", ["0:0", tree + "/owned"]).status == 0)
        let again = try Imagectl.run(args + ["/bin/true"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try Self.owner(tree + "/owned") == "0:0")
        // Back to 0 ("undo", as nspawn's manual says): the tree is the image's again.
        let undo = try Imagectl.run(["run", "-D", tree, "-M", machine, "-q", "--private-users=0", "--private-users-ownership=chown", "/bin/true"])
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try Self.owner(tree) == "0:0")
        #expect(try Tool.run("stat", ["-c", "%u:%g", tree + "/bin/busybox"]).stdout == "0:0\n")
    }

    @Test func yesTakesTheBaseFromTheRootDirectorysOwner() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let shift = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "--private-users=4194304", "--private-users-ownership=chown", "/bin/true"])
        #expect(shift.status == 0, "\(shift.stderr)")
        let r = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "--private-users=yes", "--", "/bin/sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g /"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.map(r.stdout) == [0, 4194304, 65536])
        #expect(r.stdout.hasSuffix("\n0:0\n"))
        // UID and GID bases that differ are refused, as nspawn does.
        #expect(try Tool.run("chown", ["4194304:5242880", tree]).status == 0)
        let mismatch = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "--private-users=yes", "/bin/true"])
        #expect(mismatch.status == 1)
        #expect(mismatch.stderr.contains("error: UID and GID base of \(tree) don't match"), "\(mismatch.stderr)")
    }

    @Test func identityAndFixedRanges() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let identity = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "--private-users=identity", "cat", "/proc/self/uid_map"])
        #expect(identity.status == 0, "\(identity.stderr)")
        #expect(Self.map(identity.stdout) == [0, 0, 65536])
        let fixed = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "--private-users=1966080:70000",
                                      "--private-users-ownership=map", "--chdir=/", "cat", "/proc/self/uid_map"])
        #expect(fixed.status == 0, "\(fixed.stderr)")
        #expect(Self.map(fixed.stdout) == [0, 1966080, 70000])
    }

    @Test(arguments: [["--private-users=1:0"], ["--private-users=4294967295"], ["--private-users=pik"],
                      ["--private-users-ownership=yes"]])
    func badValuesAreUsageErrors(_ options: [String]) throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let r = try Imagectl.run(["run", "-D", "\(Fixtures.directory)/busybox-tree", "-q"] + options + ["/bin/true"])
        #expect(r.status == 2)
        #expect(r.stderr.hasPrefix("error:") || r.stderr.contains("Error:"), "\(r.stderr)")
        #expect(r.stderr.contains("--private-users"))
    }

    @Test func chownIsRefusedWhereItWouldChangeATreeThatMustStay() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let tree = "\(Fixtures.directory)/busybox-tree"
        let before = try Self.owner(tree)
        for extra in [["--read-only"], ["-x"]] {
            let r = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "-U", "--private-users-ownership=chown"] + extra + ["/bin/true"])
            #expect(r.status == 1)
            #expect(r.stderr.hasPrefix("error:") && r.stderr.contains("chown"), "\(r.stderr)")
        }
        #expect(try Self.owner(tree) == before)
    }

    @Test func aRangeHeldByARunningContainerIsBusy() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        // A second tree: a tree in use is locked by itself.
        let other = scratch.appending("other")
        #expect(try Tool.run("cp", ["-a", tree, other]).status == 0)
        let binary = Imagectl.binary
        // The first container holds 0x00A00000 for 5 s (once it is listed as running); the second asks for an overlapping range.
        let script = """
            "$0" run -D "$1" -M "$2" -q --private-users=10485760 --chdir=/ /bin/sleep 5 &
            for i in $(seq 100); do "$0" machines | grep -q "^$2 " && break; sleep 0.1; done
            "$0" run -D "$4" -M "$3" -q --private-users=10420224:131072 --chdir=/ /bin/true; echo "second=$?"
            wait $!; echo "first=$?"
            """
        let r = try Tool.run("sh", ["-c", script, binary, tree, Self.unique(), Self.unique(), other])
        #expect(r.stdout.contains("second=16"), "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("first=0"))
        #expect(r.stderr.contains("error: UID/GID range 10420224:131072 is in use by another running container"))
        // Released afterwards.
        let after = try Imagectl.run(["run", "-D", other, "-M", Self.unique(), "-q", "--private-users=10420224:131072", "--chdir=/", "/bin/true"])
        #expect(after.status == 0, "\(after.stderr)")
        // The reservation files of both 64K blocks went with the runs (the default runtime dir).
        if ProcessInfo.processInfo.environment["IMAGECTL_RUNTIME_DIR"] == nil {
            #expect(!FileManager.default.fileExists(atPath: "/run/imagectl/userns/9f0000"))
            #expect(!FileManager.default.fileExists(atPath: "/run/imagectl/userns/a00000"))
        }
    }

    @Test func shellJoinsTheUserNamespaceAndTheBoundingSetStillApplies() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let machine = Self.unique()
        let binary = Imagectl.binary
        let script = """
            "$0" run -D "$1" -M "$2" -q -U --drop-capability=CAP_CHOWN /bin/sh -c 'grep CapBnd /proc/self/status; sleep 5' &
            for i in $(seq 100); do "$0" machines | grep -q "^$2 " && break; sleep 0.1; done
            "$0" status --json "$2" > "$3"
            "$0" shell "$2" /bin/sh -c 'cat /proc/self/uid_map; id -u; grep CapBnd /proc/self/status'; echo "shell=$?"
            wait $!; echo "run=$?"
            """
        let listing = scratch.appending("machines.json")
        let r = try Tool.run("sh", ["-c", script, binary, tree, machine, listing])
        #expect(r.stdout.contains("shell=0") && r.stdout.contains("run=0"), "\(r.stdout) \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let maps = lines.map(Self.map).filter { $0.count == 3 }
        #expect(maps.count == 1 && maps.first?[1] != 0, "\(r.stdout)")
        // The container's bounding set (nspawn's default minus CAP_CHOWN, bit 0) inside both.
        let bounding = lines.filter { $0.hasPrefix("CapBnd:") }
        #expect(bounding.count == 2 && Set(bounding).count == 1, "\(bounding)")
        if let mask = bounding.first?.split(separator: "\t").last, let value = UInt64(mask, radix: 16) {
            #expect(value & 1 == 0)
            #expect(value & (1 << 21) != 0)  // CAP_SYS_ADMIN stays, as nspawn's default set has it
        }
        #expect(lines.contains("0"))
        // `status --json` shows the range (and the ownership auto chose) of the record.
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: listing))) as? [String: Any]
        let userNamespace = record?["userNamespace"] as? [String: Any]
        #expect((userNamespace?["base"] as? NSNumber)?.uint64Value == maps.first?[1], "\(String(describing: record))")
        #expect((userNamespace?["size"] as? NSNumber)?.intValue == 65536)
        #expect(userNamespace?["ownership"] as? String == "map")
    }

    @Test func bindWithIdmapShowsTheHostsOwnersInsideAndWithoutItNobody() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let shared = scratch.appending("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: shared + "/f", contents: Data("x".utf8)))
        #expect(try Tool.run("chown", ["1000:100", shared + "/f"]).status == 0)
        let r = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "-q", "-U",
                                  "--bind=\(shared):/mapped:idmap", "--bind-ro=\(shared):/plain", "--",
                                  "/bin/sh", "-c", "stat -c %u:%g /mapped/f /plain/f; touch /mapped/new"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "1000:100\n65534:65534\n")
        // Written through the ID-mapped bind: the host's root owns it.
        #expect(try Self.owner(shared + "/new") == "0:0")
    }

    @Test func volatileRootGetsAnIDMappedUsr() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        // The fixture is only read: --volatile=yes binds its /usr (ID-mapped) under a tmpfs root.
        let r = try Imagectl.run(["run", "-D", "\(Fixtures.directory)/debian-tree", "-M", Self.unique(), "-q", "-U",
                                  "--volatile=yes", "/bin/sh", "-c", "stat -c '%u:%g %A' /usr/bin/passwd /; touch /usr/x 2>/dev/null || echo ro"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "0:0 -rwsr-xr-x\n0:0 drwxr-xr-x\nro\n", "\(r.stdout)")
    }

    @Test func bootedDebianTreeReachesPoweroffInAUserNamespace() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        // -x: the fixture stays as it is (the throw-away layer over an ID-mapped lower tree).
        let r = try Imagectl.run(["run", "-D", "\(Fixtures.directory)/debian-tree", "-M", Self.unique(), "-U", "-x",
                                  "-b", "systemd.unit=poweroff.target"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("has been shut down"), "\(r.stderr)")
    }

    /// The default: a picked range over an ID-mapped root, no word about it; a host bind is
    /// ID-mapped (root inside writes as the host's root, as without a user namespace) unless
    /// :noidmap; an overlay falls back to no user namespace with one warning even with -q;
    /// --private-users=no warns unless -q.
    @Test func defaultUserNamespaceAndItsFallbacks() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let scratch = try TemporaryDirectory(prefix: "run-userns")
        let tree = try Self.copy("busybox-tree", to: scratch)
        let shared = scratch.appending("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        let script = "cat /proc/self/uid_map; touch /mnt/written"
        let plain = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "--bind=\(shared):/mnt", "/bin/sh", "-c", script])
        #expect(plain.status == 0 && plain.stderr.isEmpty, "\(plain.stderr)")
        let range = Self.map(plain.stdout)
        #expect(range.count == 3 && range[0] == 0 && range[1] >= 0x80000 && range[2] == 65536, "\(plain.stdout)")
        var st = stat()
        #expect(stat(shared + "/written", &st) == 0 && st.st_uid == 0, "the bind is ID-mapped: root's file is the host root's")
        // :noidmap: the host's root-owned directory is nobody's inside, so root cannot write.
        let noidmap = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "--bind=\(shared):/mnt:noidmap",
                                        "/bin/sh", "-c", "touch /mnt/refused"])
        #expect(noidmap.status != 0 && !FileManager.default.fileExists(atPath: shared + "/refused"))

        // A read-only overlay needs two lower layers (overlayfs without an upper layer).
        let lower = scratch.appending("lower"), lower2 = scratch.appending("lower2")
        for directory in [lower, lower2] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let overlay = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "--overlay-ro=\(lower):\(lower2):/srv",
                                        "cat", "/proc/self/uid_map"])
        #expect(overlay.status == 0)
        #expect(Self.map(overlay.stdout) == [0, 0, 4294967295], "no user namespace: \(overlay.stdout)")
        let lines = overlay.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("warning: ") && lines[0].contains("overlay")
                && lines[0].contains("the container's root is the host's root"), "\(overlay.stderr)")

        let off = try Imagectl.run(["run", "-D", tree, "-M", Self.unique(), "--private-users=no", "/bin/true"])
        #expect(off.status == 0 && off.stderr.contains("warning: no user namespace (--private-users=no)"), "\(off.stderr)")
        let quiet = try Imagectl.run(["run", "-q", "-D", tree, "-M", Self.unique(), "--private-users=no", "/bin/true"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
    }
}
