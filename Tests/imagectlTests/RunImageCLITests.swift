import Foundation
import Testing
import TestSupport

/// `imagectl run` root sources (-i, -M from the store) and extra mounts (--bind, --bind-ro,
/// --tmpfs, --overlay, --overlay-ro), checked from inside the container and on the host
/// afterwards (no mount, loop device or temporary directory left behind).
@Suite("imagectl run: images and mounts", .serialized)
struct RunImageCLITests {
    static let fixtures = Fixtures.directory

    /// A copy of a fixture image (tests that may write never touch the shared fixtures).
    static func copy(_ fixture: String, to directory: TemporaryDirectory, as name: String? = nil) throws -> String {
        let target = directory.appending(name ?? fixture)
        let r = try Tool.run("cp", ["-a", "--sparse=always", "\(fixtures)/\(fixture)", target])
        guard r.status == 0 else { throw Failure(text: r.stderr) }
        return target
    }
    struct Failure: Error { var text: String }

    /// Machine names must be unique among running machines, and other test runs may be going on.
    static func unique() -> String { UUID().uuidString.prefix(8).lowercased() }

    static func rootHash(_ fixture: String) throws -> String {
        try String(contentsOfFile: "\(fixtures)/\(fixture)", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Loop devices whose backing file is `image`.
    static func loops(of image: String) throws -> String {
        try Tool.run("losetup", ["-j", image]).stdout
    }

    /// A private copy of gpt-verity.raw (other test runs may use the fixture at the same time:
    /// "no loop device of this file" then speaks only of this test; a mount pins its loop device,
    /// so no loop device also means no mount).
    static func verityImage(_ scratch: TemporaryDirectory) throws -> String {
        try copy("gpt-verity.raw", to: scratch, as: "gv-\(unique()).raw")
    }

    static func temporaries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/var/tmp")) ?? []).filter {
            $0.hasPrefix("imagectl-bind-") || $0.hasPrefix("imagectl-overlay-")
        }
    }

    // MARK: -i

    @Test func verityImageRunsACommandThatReadsOSRelease() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let image = try Self.verityImage(scratch)
        let r = try Imagectl.run(["run", "-i", image, "--root-hash=\(try Self.rootHash("gpt-verity.roothash.txt"))",
                                  "cat", "/etc/os-release"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("ID=imagectl-test\n"))
        // Which verity path was taken is said; the machine is named after the image.
        #expect(r.stderr.contains("root: device-mapper unavailable: verified the whole verity tree in userspace"))
        // Which of the two userspace paths depends on the file system of the scratch directory
        // (VerityPathCLITests pins each one down on a file system made for it).
        #expect(r.stderr.contains("the check was one-time: later writes to \(image) are not caught")
                || r.stderr.contains("on a private reflink copy of \(image)"), "\(r.stderr)")
        let machine = URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent
        #expect(r.stderr.contains("Spawning container \(machine) on \(image)."))
        #expect(try Self.loops(of: image).isEmpty)
    }

    @Test func verityRootIsReadOnlyInside() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let r = try Imagectl.run(["run", "-q", "-i", try Self.verityImage(scratch),
                                  "--root-hash=\(try Self.rootHash("gpt-verity.roothash.txt"))",
                                  "sh", "-c", "touch /new-file && echo wrote"])
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("Read-only file system"))
    }

    @Test func wrongRootHashRefusesToStartAndLeavesNothing() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let image = try Self.verityImage(scratch)
        let good = try Self.rootHash("gpt-verity.roothash.txt")
        // A hash whose first half still names the root partition (repart derives the UUIDs of
        // root and root-verity from the halves), and a hash of zeros.
        let lastHalf = String(good.dropFirst(32).map { $0 == "0" ? "1" : "0" })
        for wrong in [String(good.prefix(32)) + lastHalf, String(repeating: "0", count: 64)] {
            let r = try Imagectl.run(["run", "-i", image, "--root-hash=\(wrong)", "cat", "/etc/os-release"])
            #expect(r.status == 1)
            #expect(r.stdout.isEmpty)
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "\(r.stderr)")
            #expect(try Self.loops(of: image).isEmpty)
        }
    }

    @Test func imagePolicyIsCheckedBeforeAnythingIsMounted() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let image = try Self.verityImage(scratch)
        // Without a root hash the root is unprotected, which root=verity does not allow.
        let refused = try Imagectl.run(["run", "-q", "-i", image, "--read-only", "--image-policy=root=verity", "true"])
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("error: image policy: root partition is unprotected"))
        #expect(try Self.loops(of: image).isEmpty)
        let allowed = try Imagectl.run(["run", "-q", "-i", image, "--root-hash=\(try Self.rootHash("gpt-verity.roothash.txt"))",
                                        "--image-policy=root=verity", "true"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
    }

    @Test func readOnlyImageAndWritableCopy() throws {
        try Privileged.require(.root, .loopDevices, .fixture("bare-ext4.raw"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let name = "web-\(UUID().uuidString.prefix(8).lowercased())"
        let image = try Self.copy("bare-ext4.raw", to: scratch, as: "\(name).raw")
        let ro = try Imagectl.run(["run", "-q", "--read-only", "-i", image, "sh", "-c", "hostname; touch /x"])
        #expect(ro.stdout == "\(name)\n")
        #expect(ro.stderr.contains("Read-only file system"))
        // Writable by default (as nspawn): a write inside lands in the image.
        let rw = try Imagectl.run(["run", "-q", "-i", image, "sh", "-c", "echo kept > /written"])
        #expect(rw.status == 0, "\(rw.stderr)")
        let again = try Imagectl.run(["run", "-q", "--read-only", "-i", image, "cat", "/written"])
        #expect(again.stdout == "kept\n")
        #expect(try Self.loops(of: image).isEmpty)
    }

    @Test func sigtermTearsTheImageDown() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity.raw"), .tool("losetup"))
        let scratch = try TemporaryDirectory(prefix: "run-image")
        let image = try Self.verityImage(scratch)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["run", "-q", "-i", image, "--root-hash=\(try Self.rootHash("gpt-verity.roothash.txt"))",
                             "sh", "-c", "echo started; exec sleep 60"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Running once the payload says so.
        let line = output.fileHandleForReading.availableData
        #expect(String(decoding: line, as: UTF8.self) == "started\n")
        #expect(try !Self.loops(of: image).isEmpty)
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 128 + SIGKILL)
        #expect(try Self.loops(of: image).isEmpty)
    }

    // MARK: -M from the store

    @Test func storeImagesRunAndAreLockedWhileRunning() throws {
        try Privileged.require(.root, .loopDevices, .fixture("busybox-tree"), .fixture("bare-ext4.raw"))
        let pool = try TemporaryDirectory(prefix: "run-pool")
        let bb = "bb-\(Self.unique())", disk = "disk-\(Self.unique())"
        let copy = try Tool.run("cp", ["-a", "\(Self.fixtures)/busybox-tree", pool.appending(bb)])
        #expect(copy.status == 0)
        _ = try Self.copy("bare-ext4.raw", to: pool, as: "\(disk).raw")

        // A directory image: runs, and is locked while it runs.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["run", "-q", "--root", pool.path, "-M", bb, "sh", "-c", "touch /started; sleep 3"]
        try process.run()
        var started = false
        for _ in 0..<100 where !started {
            usleep(50_000)
            started = FileManager.default.fileExists(atPath: pool.appending("\(bb)/started"))
        }
        #expect(started)
        let busy = try Imagectl.run(["remove", bb], root: pool.path)
        #expect(busy.status == 16, "\(busy.stderr)")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // A raw image in the pool is dissected and mounted; -M names it and the machine.
        let raw = try Imagectl.run(["run", "-q", "--read-only", "--root", pool.path, "-M", disk, "hostname"])
        #expect(raw.stdout == "\(disk)\n", "\(raw.stderr)")
        // Unlocked afterwards.
        #expect(try Imagectl.run(["remove", bb], root: pool.path).status == 0)
        let missing = try Imagectl.run(["run", "-q", "--root", pool.path, "-M", bb, "true"])
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: ") && missing.stderr.contains(bb))
    }

    /// A directory tree has no verity: a policy demanding it, a root hash or a usr hash must stop
    /// the start however the tree is named (a pool image with -M, a path with -D), and `mount`
    /// too. Nothing runs, nothing is mounted, one error line.
    @Test func directoryImagesRefuseVerityDemandsHoweverNamed() throws {
        try Privileged.require(.root, .loopDevices, .fixture("busybox-tree"))
        let pool = try TemporaryDirectory(prefix: "run-pool-verity")
        let name = "dv-\(Self.unique())"
        let copy = try Tool.run("cp", ["-a", "\(Self.fixtures)/busybox-tree", pool.appending(name)])
        #expect(copy.status == 0)
        let hash = String(repeating: "ab", count: 32)
        let demands = [["--image-policy=root=verity+signed"], ["--root-hash=\(hash)"], ["--usr-hash=\(hash)"]]
        let sources = [["--root", pool.path, "-M", name], ["-D", pool.appending(name)]]
        for demand in demands {
            for source in sources {
                let r = try Imagectl.run(["run"] + source + demand + ["/bin/sh", "-c", "echo RAN"])
                #expect(r.status == 1, "\(source) \(demand): \(r.stderr)")
                #expect(!r.stdout.contains("RAN"))
                let lines = r.stderr.split(separator: "\n")
                #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "\(r.stderr)")
                #expect(r.stderr.contains("directory tree"), "\(r.stderr)")
            }
            let target = pool.appending("mnt-\(Self.unique())")
            let mount = try Imagectl.run(["mount", "--root", pool.path, name, target, "--mkdir"] + demand)
            #expect(mount.status == 1, "\(demand): \(mount.stderr)")
            let lines = mount.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("error: ") == true, "\(mount.stderr)")
            let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            #expect(!mounts.contains(target))
        }
        // The same tree without the demands runs, and a policy it meets is accepted.
        let plain = try Imagectl.run(["run", "-q", "--root", pool.path, "-M", name, "--image-policy=root=unprotected", "/bin/sh", "-c", "echo RAN"])
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout == "RAN\n")
    }

    /// A keyring holding one throw-away certificate that signed nothing.
    static func unrelatedKeyring(_ scratch: TemporaryDirectory) throws -> String {
        let keyring = scratch.appending("keyring")
        try FileManager.default.createDirectory(atPath: keyring, withIntermediateDirectories: true)
        let r = try Tool.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", scratch.appending("other.key"), "-x509",
                                         "-days", "3650", "-subj", "/CN=someone else", "-out", keyring + "/other.pem"])
        guard r.status == 0 else { throw Failure(text: r.stderr) }
        return keyring
    }

    /// systemd's rule: a signature by a signer not in the keyring leaves the image usable as
    /// plain verity (with a warning naming the signer) unless the policy demands "signed".
    @Test func unknownSignerRunsAsVerityWithAWarningUnlessSignedIsDemanded() throws {
        try Privileged.require(.root, .loopDevices, .fixture("gpt-verity-signed.raw"), .fixture("verity-cert.pem"),
                                .tool("openssl"), .tool("losetup"))
        let scratch = try TemporaryDirectory(prefix: "run-signer")
        let image = try Self.copy("gpt-verity-signed.raw", to: scratch, as: "gs-\(Self.unique()).raw")
        let keyring = try Self.unrelatedKeyring(scratch)

        let runs = try Imagectl.run(["run", "-q", "-i", image, "--verity-keyring=\(keyring)", "cat", "/etc/os-release"])
        #expect(runs.status == 0, "\(runs.stderr)")
        #expect(runs.stdout.contains("ID=imagectl-test\n"))
        let warnings = runs.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: root: ") }
        #expect(warnings.count == 1, "\(runs.stderr)")
        #expect(warnings.first?.contains("CN=imagectl test verity signing") == true, "\(runs.stderr)")
        #expect(warnings.first?.contains("not trusted") == true)

        for policy in ["root=signed", "root=signed+absent"] {
            let refused = try Imagectl.run(["run", "-q", "-i", image, "--verity-keyring=\(keyring)", "--image-policy=\(policy)", "true"])
            #expect(refused.status == 1)
            let lines = refused.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines.first?.hasPrefix("error: image policy: root partition is verity") == true, "\(refused.stderr)")
            #expect(try Self.loops(of: image).isEmpty)
        }

        // The machine record says how the running image is protected.
        let name = "gm-\(Self.unique())"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Imagectl.binary)
        process.arguments = ["run", "-q", "-M", name, "-i", image, "--verity-keyring=\(keyring)", "sleep", "3"]
        try process.run()
        var record: [String: Any]?
        for _ in 0..<100 where record == nil {
            usleep(50_000)
            let status = try Imagectl.run(["status", "--json", name])
            record = status.status == 0 ? (try? JSONSerialization.jsonObject(with: status.stdoutData)) as? [String: Any] : nil
        }
        process.waitUntilExit()
        let verity = (record?["verity"] as? [[String: Any]])?.first
        #expect(verity?["outcome"] as? String == "verity-only", "\(String(describing: record))")
        #expect((verity?["signer"] as? String)?.contains("imagectl test verity signing") == true)

        // Trusted: no warning, and root=signed is met.
        let trusted = scratch.appending("trusted")
        try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(Self.fixtures)/verity-cert.pem", toPath: trusted + "/cert.pem")
        let signed = try Imagectl.run(["run", "-q", "-i", image, "--verity-keyring=\(trusted)", "--image-policy=root=signed", "true"])
        #expect(signed.status == 0, "\(signed.stderr)")
        #expect(!signed.stderr.contains("warning: root"))
        #expect(try Self.loops(of: image).isEmpty)
    }

    /// dissect shows what the signature is worth here: verity-only with the signer when it is
    /// not in the keyring, signed-and-trusted when it is.
    @Test func dissectShowsTheProtectionOutcome() throws {
        try Privileged.require(.fixture("gpt-verity-signed.raw"), .fixture("verity-cert.pem"), .tool("openssl"))
        let scratch = try TemporaryDirectory(prefix: "dissect-signer")
        let image = "\(Self.fixtures)/gpt-verity-signed.raw"
        func protection(_ keyring: String) throws -> [String: Any] {
            let r = try Imagectl.run(["dissect", "--json", "--verity-keyring=\(keyring)", image])
            #expect(r.status == 0, "\(r.stderr)")
            let document = try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any]
            let entries = document?["protection"] as? [[String: Any]] ?? []
            return entries.first { $0["designator"] as? String == "root" } ?? [:]
        }
        let untrusted = try protection(try Self.unrelatedKeyring(scratch))
        #expect(untrusted["outcome"] as? String == "verity-only")
        #expect((untrusted["signer"] as? String)?.contains("imagectl test verity signing") == true)
        let trusted = scratch.appending("trusted")
        try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(Self.fixtures)/verity-cert.pem", toPath: trusted + "/cert.pem")
        #expect(try protection(trusted)["outcome"] as? String == "signed-and-trusted")
        let table = try Imagectl.run(["dissect", "--verity-keyring=\(trusted)", image])
        #expect(table.stdout.contains("Protection: root: signed-and-trusted (by "), "\(table.stdout)")
    }

    @Test func helpNamesTheSourceAndMountOptions() throws {
        let help = try Imagectl.run(["run", "--help"])
        #expect(help.status == 0)
        for option in ["--image", "--root-hash", "--image-policy", "--bind-ro", "--tmpfs", "--overlay-ro", "--volatile"] {
            #expect(help.stdout.contains(option), "\(option)")
        }
    }

    @Test func rootSourcesExcludeEachOther() throws {
        let none = try Imagectl.run(["run", "true"])
        #expect(none.status == 2)
        #expect(none.stderr.contains("no root given"))
        let both = try Imagectl.run(["run", "-D", "/tmp", "-i", "/tmp/x.raw", "true"])
        #expect(both.status == 2)
        #expect(both.stderr.contains("cannot be combined"))
        // A root hash for a directory tree is not a usage error but an image it cannot apply to.
        let hashWithDirectory = try Imagectl.run(["run", "-D", "/tmp", "--root-hash=00", "true"])
        #expect(hashWithDirectory.status == 1)
        #expect(hashWithDirectory.stderr.contains("--root-hash"), "\(hashWithDirectory.stderr)")
    }

    // MARK: Extra mounts

    /// A busybox tree and a host directory with a file, under /var/tmp (the container gets its
    /// own /tmp, so paths below /tmp could not be compared inside and outside).
    final class Setup: @unchecked Sendable {
        // Immutable after init; deinit removes the directory.
        let scratch: TemporaryDirectory
        let root: String
        let source: String
        init() throws {
            scratch = try TemporaryDirectory(prefix: "run-mounts", under: "/var/tmp")
            // A name of its own: the machine is named after it, and machine names are unique.
            root = scratch.appending("rm-\(UUID().uuidString.prefix(8).lowercased())")
            source = scratch.appending("source")
            let r = try Tool.run("cp", ["-a", "\(RunImageCLITests.fixtures)/busybox-tree", root])
            guard r.status == 0 else { throw Failure(text: r.stderr) }
            try FileManager.default.createDirectory(atPath: source + "/sub", withIntermediateDirectories: true)
            try "from the host\n".write(toFile: source + "/file", atomically: false, encoding: .utf8)
        }
    }

    @Test func bindsAreVisibleAndReadOnlyAsAsked() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let s = try Setup()
        let before = Self.temporaries()
        let r = try Imagectl.run(["run", "-q", "-D", s.root,
                                  "--bind=\(s.source):/mnt/rw", "--bind-ro=\(s.source):/mnt/ro",
                                  "--bind-ro=\(s.source)/file:/etc/host-file", "--bind=+/srv:/mnt/inner",
                                  "--bind=:/scratch", "--tmpfs=/var/cache/t:mode=0700,size=1m",
                                  "sh", "-c", """
                                  cat /mnt/rw/file /mnt/ro/file /etc/host-file; ls /mnt/inner
                                  echo w > /mnt/rw/written && echo rw-ok
                                  echo w > /mnt/ro/written || echo ro-refused
                                  echo w > /scratch/x && echo scratch-ok
                                  stat -c %a /var/cache/t; grep -c ' /var/cache/t .* tmpfs ' /proc/self/mountinfo
                                  """])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "from the host\nfrom the host\nfrom the host\nmarker\nrw-ok\nro-refused\nscratch-ok\n700\n1\n")
        #expect(FileManager.default.fileExists(atPath: s.source + "/written"))
        // The empty-source directory is gone afterwards.
        #expect(Self.temporaries() == before)
    }

    @Test func symlinkedBindTargetCannotRedirectTheMount() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let s = try Setup()
        // Host directories, the same paths inside the image, and symlinks in the image pointing
        // at them: absolutely, and relatively with more ".." than the tree is deep.
        let hostA = s.scratch.appending("host-a"), hostB = s.scratch.appending("host-b")
        for dir in [hostA, hostB] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "host\n".write(toFile: dir + "/host-file", atomically: false, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: s.root + dir, withIntermediateDirectories: true)
        }
        try FileManager.default.createSymbolicLink(atPath: s.root + "/absolute", withDestinationPath: hostA)
        try FileManager.default.createSymbolicLink(atPath: s.root + "/relative",
                                                   withDestinationPath: String(repeating: "../", count: 12) + hostB.dropFirst())
        let r = try Imagectl.run(["run", "-q", "-D", s.root, "--bind-ro=\(s.source):/absolute", "--bind-ro=\(s.source):/relative/deeper",
                                  "sh", "-c", "ls \(hostA); ls \(hostB); ls \(hostB)/deeper"])
        #expect(r.status == 0, "\(r.stderr)")
        // Both mounts landed on the image's copies of the paths, not on the host's directories.
        #expect(r.stdout == "file\nsub\ndeeper\nfile\nsub\n", "\(r.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: hostA) == ["host-file"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: hostB) == ["host-file"])
        #expect(FileManager.default.fileExists(atPath: s.root + hostB + "/deeper"))
    }

    @Test func overlaysWithHostContainerAndTemporaryUpperLayers() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let s = try Setup()
        let upper = s.scratch.appending("upper")
        try FileManager.default.createDirectory(atPath: upper, withIntermediateDirectories: true)
        let before = Self.temporaries()
        let r = try Imagectl.run(["run", "-q", "-D", s.root,
                                  "--overlay=\(s.source):\(upper):/ov", "--overlay=+/srv::/srv",
                                  "--overlay-ro=\(s.source):+/usr/share/imagectl:/ro", "--overlay=+/var/lib:+/home/user:/ov2",
                                  "sh", "-c", """
                                  cat /ov/file; echo new > /ov/added
                                  echo s > /srv/added && ls /srv
                                  ls /ro; touch /ro/x || echo ro-refused
                                  ls /ov2; echo q > /ov2/added
                                  """])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "from the host\nadded\nmarker\nfile\nmarker\nsub\nro-refused\nhello.txt\nimagectl\n", "\(r.stdout)")
        // Writes went to the upper layers: the host upper directory, the container's
        // /home/user; the lower layers and the temporary /srv upper are untouched/gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: upper) == ["added"])
        #expect(!FileManager.default.fileExists(atPath: s.source + "/added"))
        #expect(!FileManager.default.fileExists(atPath: s.root + "/srv/added"))
        #expect(FileManager.default.fileExists(atPath: s.root + "/home/user/added"))
        // No work directories left beside the upper layers, no temporaries in /var/tmp.
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.scratch.path).sorted() == [URL(fileURLWithPath: s.root).lastPathComponent, "source", "upper"].sorted())
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root + "/home").sorted() == ["user"])
        #expect(Self.temporaries() == before)
    }

    // MARK: -x on btrfs, --volatile

    @Test func ephemeralOnABtrfsSubvolumeIsASnapshotThatIsDeleted() throws {
        try Privileged.require(.root, .btrfs, .fixture("busybox-tree"), .tool("btrfs"))
        let fs = try BtrfsScratch()
        defer { fs.unmount() }
        let source = fs.appending("bbsub")
        #expect(try Tool.run("btrfs", ["-q", "subvolume", "create", source]).status == 0)
        #expect(try Tool.run("cp", ["-a", "\(Self.fixtures)/busybox-tree/.", source]).status == 0)
        let r = try Imagectl.run(["run", "-q", "-x", "-D", source, "sh", "-c",
                                  "echo changed > /etc/hostname; touch /new; hostname; head -n 1 /proc/self/mountinfo"])
        #expect(r.status == 0, "\(r.stderr)")
        // The machine (and host) name is the source's with nspawn's random suffix for an
        // ephemeral machine; the root is the btrfs snapshot, not an overlay.
        let hostname = String(r.stdout.prefix { $0 != "\n" })
        #expect(hostname.hasPrefix("bbsub-") && hostname.count == 6 + 16 && hostname.dropFirst(6).allSatisfy(\.isHexDigit), "\(hostname)")
        #expect(r.stdout.contains(" - btrfs "), "\(r.stdout)")
        #expect(try String(contentsOfFile: source + "/etc/hostname", encoding: .utf8) == "imagectl-busybox\n")
        #expect(!FileManager.default.fileExists(atPath: source + "/new"))
        // The snapshot is gone: only the source subvolume is left.
        #expect(try FileManager.default.contentsOfDirectory(atPath: fs.mountPoint) == ["bbsub"])
        let list = try Tool.run("btrfs", ["subvolume", "list", fs.mountPoint])
        #expect(list.stdout.split(separator: "\n").count == 1, "\(list.stdout)")
    }

    @Test func volatileModes() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .fixture("debian-tree"))
        let s = try Setup()
        // state: the tree read-only, /var a tmpfs.
        let state = try Imagectl.run(["run", "-q", "-D", s.root, "--volatile=state", "sh", "-c",
                                      "ls /var/lib; echo x > /var/written && echo var-ok; touch /etc/x || echo etc-ro"])
        #expect(state.stdout == "var-ok\netc-ro\n", "\(state.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.root + "/var/written"))
        // overlay: everything writable, nothing kept.
        let overlay = try Imagectl.run(["run", "-q", "-D", s.root, "--volatile=overlay", "sh", "-c", "echo y > /etc/hostname && cat /etc/hostname"])
        #expect(overlay.stdout == "y\n", "\(overlay.stderr)")
        #expect(try String(contentsOfFile: s.root + "/etc/hostname", encoding: .utf8) == "imagectl-busybox\n")
        // yes: a tmpfs root holding only the tree's /usr, read-only (a merged-/usr tree runs).
        // A machine name of its own: other suites run the debian-tree fixture (named after it) at
        // the same time, and a running machine's name is taken (busy).
        let yes = try Imagectl.run(["run", "-q", "-D", "\(Self.fixtures)/debian-tree", "-M", "vol-\(UUID().uuidString.prefix(8).lowercased())",
                                    "--volatile=yes", "/usr/bin/sh", "-c",
                                    "/usr/bin/ls /; /usr/bin/touch /usr/x || echo usr-ro; /usr/bin/touch /root-file && echo root-rw"])
        #expect(yes.stdout == "bin\ndev\nlib\nlib64\nproc\nrun\nsbin\nsys\ntmp\nusr\nusr-ro\nroot-rw\n", "\(yes.stdout) \(yes.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(Self.fixtures)/debian-tree/root-file"))
        let conflict = try Imagectl.run(["run", "-D", s.root, "-x", "--volatile=state", "true"])
        #expect(conflict.status == 2)
    }

    @Test func badMountOptionsAreUsageErrors() throws {
        for option in ["--volatile=maybe", "--bind=relative", "--bind=/a:/b:rootidmap", "--tmpfs=/", "--overlay=/only", "--bind-ro=/a/../b"] {
            let r = try Imagectl.run(["run", "-D", "/tmp", option, "true"])
            #expect(r.status == 2, "\(option)")
            #expect(r.stderr.contains("invalid"), "\(option): \(r.stderr)")
        }
    }
}
