import Foundation
import Testing
import TestSupport

/// `imagectl vm -D` (a directory tree with its root on virtiofs) and --bind/--bind-ro: one real
/// boot of the vm-debian-tree fixture under TCG that checks everything from inside, and
/// --print-command runs (no boot) for the command lines.
@Suite(.serialized) struct VMDirectoryCLITests {
    /// Processes whose command line mentions `text` (a test's own runtime directory).
    static func processes(mentioning text: String) -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { $0.allSatisfy(\.isNumber) } ?? []
        return pids.compactMap { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let line = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return line.contains(text) ? "\(pid): \(line)" : nil
        }
    }

    /// The fixture tree booted with -x: its root is virtiofs (checked by the guest's
    /// imagectl-vm-check unit), a --bind share reads the host's file and writes one back, a
    /// --bind-ro share refuses writes, the tree is unchanged afterwards (the guest's write went
    /// to the throw-away overlay) and no virtiofsd or socket is left.
    @Test(.timeLimit(.minutes(6)))
    func ephemeralTreeBootsWithRootOnVirtiofsAndShares() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("/usr/lib/qemu/virtiofsd"), .fixture("vm-debian-tree"))
        let tree = try #require(Fixtures.path("vm-debian-tree"))
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-vm-tmp", under: "/var/tmp")
        let runtime = try TemporaryDirectory(prefix: "imagectl-vm-run")
        let shared = try TemporaryDirectory(prefix: "imagectl-vm-rw")
        let readOnly = try TemporaryDirectory(prefix: "imagectl-vm-ro")
        let secret = "hello-\(UUID().uuidString.prefix(8))"
        try Data(secret.utf8).write(to: URL(fileURLWithPath: shared.path + "/from-host"))
        try Data("ro-\(secret)".utf8).write(to: URL(fileURLWithPath: readOnly.path + "/from-host"))
        let marker = tree + "/imagectl-vm-check-was-here"
        #expect(!FileManager.default.fileExists(atPath: marker))
        let started = Date()
        let r = try Imagectl.run(["vm", "-x", "-D", tree, "--kvm=no", "--tpm=no", "--console=read-only", "--ram=1G", "--cpus=2",
                                  "--bind=\(shared.path):/mnt/rw", "--bind-ro=\(readOnly.path):/mnt/ro",
                                  "systemd.unit=imagectl-vm-check.target"] + VMCLITests.guestWords,
                                 environment: ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path])
        let seconds = Date().timeIntervalSince(started)
        #expect(r.status == 0, "stderr: \(r.stderr)\nstdout: \(r.stdout.suffix(3000))")
        // The unit's lines, from where they start (systemd's status output may share a line).
        let lines = r.stdout.split(whereSeparator: \.isNewline).compactMap { line in
            line.range(of: "imagectl-vm-check: ").map { String(line[$0.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        let said = lines.joined(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("imagectl-vm-check: root virtiofs root ") && $0.contains("rw") }, "\(said)\n\(r.stdout.suffix(3000))")
        #expect(lines.contains("imagectl-vm-check: root writable"), "\(said)")
        #expect(lines.contains("imagectl-vm-check: rw virtiofs bind0 read \(secret)"), "\(said)")
        #expect(lines.contains("imagectl-vm-check: rw writable"), "\(said)")
        #expect(lines.contains("imagectl-vm-check: ro virtiofs bind1 read ro-\(secret)"), "\(said)")
        #expect(lines.contains("imagectl-vm-check: ro not writable"), "\(said)")
        #expect(r.stdout.contains("reboot: Power down"))
        #expect(r.stderr.contains("powered off"), "\(r.stderr)")
        // The guest's write through --bind reached the host; the one to its root did not.
        #expect((try? String(contentsOfFile: shared.path + "/from-guest", encoding: .utf8)) == "guest\n")
        #expect(!FileManager.default.fileExists(atPath: readOnly.path + "/from-guest"))
        #expect(!FileManager.default.fileExists(atPath: marker), "-x must leave the tree unchanged")
        #expect(Self.processes(mentioning: runtime.path).isEmpty, "virtiofsd outlived the VM")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.path + "/vfs")) ?? []).isEmpty)
        #expect(VMCLITests.leftovers(vmTemp).isEmpty)
        print("vm -D -x with two binds: \(String(format: "%.1f", seconds)) s")
    }

    /// SIGTERM to imagectl (sent until it ends: the first presses the power button of a guest
    /// still starting) ends the VM and its virtiofsd processes, and removes their sockets and
    /// the temporary directory.
    @Test(.timeLimit(.minutes(3)))
    func sigtermEndsVirtiofsdWithTheVM() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("/usr/lib/qemu/virtiofsd"), .fixture("vm-debian-tree"))
        let tree = try #require(Fixtures.path("vm-debian-tree"))
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-vm-tmp", under: "/var/tmp")
        let runtime = try TemporaryDirectory(prefix: "imagectl-vm-run")
        let shared = try TemporaryDirectory(prefix: "imagectl-vm-rw")
        let run = try MachineCLITests.Background(["vm", "-x", "-D", tree, "--kvm=no", "--tpm=no", "--console=read-only",
                                                  "--bind=\(shared.path):/mnt/rw"],
                                                 environment: ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path],
                                                 scratch: runtime)
        // Both virtiofsd (root and bind) and qemu run.
        #expect(Poll.until(timeout: 60, interval: 0.1) {
            Self.processes(mentioning: runtime.path + "/vfs/").count >= 3 || !run.process.isRunning
        }, "\(Self.processes(mentioning: runtime.path))\n\(run.text.suffix(2000))")
        try #require(run.process.isRunning, "\(run.text.suffix(2000))")
        #expect(Poll.until(timeout: 60, interval: 0.5) {
            if run.process.isRunning { kill(run.process.processIdentifier, SIGTERM) }
            return !run.process.isRunning
        })
        #expect(run.wait(seconds: 5) == 137, "\(run.text.suffix(2000))")
        #expect(Poll.until(timeout: 10, interval: 0.1) { Self.processes(mentioning: runtime.path).isEmpty },
                "left running: \(Self.processes(mentioning: runtime.path))")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.path + "/vfs")) ?? []).isEmpty)
        #expect(VMCLITests.leftovers(vmTemp).isEmpty)
    }

    /// The qemu command line of -D: the tree's kernel with the appended initrd, one
    /// vhost-user-fs device per share on shared memory, no disk, and the kernel command line
    /// words; --read-only adds ro (and no rw).
    @Test func printCommandShowsTheShares() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("/usr/lib/qemu/virtiofsd"), .fixture("vm-debian-tree"))
        let tree = try #require(Fixtures.path("vm-debian-tree"))
        let shared = try TemporaryDirectory(prefix: "imagectl-vm-rw")
        let runtime = try TemporaryDirectory(prefix: "imagectl-vm-run")
        let env = ["IMAGECTL_RUNTIME_DIR": runtime.path]
        let r = try Imagectl.run(["vm", "-D", tree, "--kvm=no", "--tpm=no", "--ram=1G", "--print-command",
                                  "--bind=\(shared.path):/mnt/x", "--bind-ro=\(shared.path):/srv/y:noatime"], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        let out = r.stdout
        #expect(out.contains("-object memory-backend-memfd,id=mem,size=1024M,share=on -numa node,memdev=mem"), "\(out)")
        #expect(out.contains("-device vhost-user-fs-pci,queue-size=1024,chardev=vfs-root,tag=root"), "\(out)")
        #expect(out.contains("-device vhost-user-fs-pci,queue-size=1024,chardev=vfs-bind0,tag=bind0"), "\(out)")
        #expect(out.contains("-device vhost-user-fs-pci,queue-size=1024,chardev=vfs-bind1,tag=bind1"), "\(out)")
        #expect(out.contains("-chardev socket,id=vfs-root,path=\(runtime.path)/vfs/"), "\(out)")
        #expect(!out.contains("-drive"), "no disk: \(out)")
        #expect(out.contains("-kernel ") && out.contains("-initrd "), "\(out)")
        #expect(out.contains("root=root rootfstype=virtiofs boot=virtiofs"), "\(out)")
        #expect(out.contains("systemd.mount-extra=bind0:/mnt/x:virtiofs"), "\(out)")
        #expect(out.contains("systemd.mount-extra=bind1:/srv/y:virtiofs:ro,noatime"), "\(out)")
        #expect(out.contains("-append 'rw console=ttyS0 root=root"), "\(out)")
        // Nothing started: no virtiofsd, no socket.
        #expect(Self.processes(mentioning: runtime.path).isEmpty)
        // A read-only tree cannot get a mount point made: a bind target it lacks is warned about.
        let ro = try Imagectl.run(["vm", "-D", tree, "--read-only=yes", "--kvm=no", "--tpm=no", "--print-command",
                                   "--bind=\(shared.path):/srv", "--bind=\(shared.path):/mnt/none"], environment: env)
        #expect(ro.status == 0, "\(ro.stderr)")
        #expect(ro.stderr == "warning: /mnt/none is no directory in the read-only tree \(tree): the guest cannot mount \(shared.path) there\n", "\(ro.stderr)")
        #expect(ro.stdout.contains("-append 'console=ttyS0 root=root rootfstype=virtiofs boot=virtiofs ro systemd.mount-extra="), "\(ro.stdout)")
    }

    /// A tree in the pool named with -M boots as -D; --bind with a disk image and firmware boot
    /// travels in the SMBIOS kernel-cmdline-extra string.
    @Test func poolTreeByNameAndBindWithAnImage() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("/usr/lib/qemu/virtiofsd"), .fixture("vm-debian-tree"),
                               .fixture("vm-debian.raw"))
        let pool = try TemporaryDirectory(prefix: "imagectl-vm-pool")
        // A tree of the pool: only what the command line needs (its kernel, initrd and modules),
        // not a copy of the whole fixture.
        let source = try #require(Fixtures.path("vm-debian-tree"))
        let tree = pool.path + "/deb"
        try FileManager.default.createDirectory(atPath: tree + "/usr", withIntermediateDirectories: true)
        try Tool.run("cp", ["-a", source + "/boot", tree + "/boot"])
        try Tool.run("cp", ["-a", source + "/usr/lib", tree + "/usr/lib"])
        let r = try Imagectl.run(["vm", "-M", "deb", "--kvm=no", "--tpm=no", "--print-command"], root: pool.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("tag=root") && r.stdout.contains("-name guest=deb") && !r.stdout.contains("-drive"), "\(r.stdout)")
        let image = try #require(Fixtures.path("vm-debian.raw"))
        let bound = try Imagectl.run(["vm", "-x", "-i", image, "--kvm=no", "--tpm=no", "--print-command", "--bind=\(pool.path):/mnt/pool"])
        #expect(bound.status == 0, "\(bound.stderr)")
        #expect(bound.stdout.contains("io.systemd.stub.kernel-cmdline-extra=systemd.mount-extra=bind0:/mnt/pool:virtiofs"), "\(bound.stdout)")
        #expect(bound.stdout.contains("tag=bind0") && bound.stdout.contains("-drive"), "\(bound.stdout)")
    }

    /// Bad share requests: one error line, nothing started.
    @Test func badSharesFailWithOneErrorLine() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("/usr/lib/qemu/virtiofsd"), .fixture("vm-debian-tree"))
        let tree = try #require(Fixtures.path("vm-debian-tree"))
        let empty = try TemporaryDirectory(prefix: "imagectl-vm-empty")
        let file = empty.path + "/file"
        FileManager.default.createFile(atPath: file, contents: Data())
        let cases: [([String], Int32, String)] = [
            (["vm", "-D", tree, "--bind=relative/dir"], 2, "--bind"),
            (["vm", "-D", tree, "--bind=/nonexistent-dir:/mnt"], 1, "/nonexistent-dir"),
            (["vm", "-D", tree, "--bind=\(file):/mnt"], 2, "a directory"),
            (["vm", "-D", tree, "--bind-ro=\(empty.path):/mnt/a b"], 2, "white space"),
            (["vm", "-D", empty.path], 1, "has no kernel"),
            (["vm", "-D", file], 1, "not a directory"),
            (["vm", "-i", file, "--read-only"], 2, "--read-only"),
        ]
        for (args, status, mention) in cases {
            let r = try Imagectl.run(args + ["--kvm=no", "--tpm=no", "--console=headless"])
            let lines = r.stderr.split(separator: "\n")
            #expect(r.status == status, "\(args): \(r.stderr)")
            #expect(lines.count == 1 && lines[0].hasPrefix("error: ") && lines[0].contains(mention), "\(args): \(r.stderr)")
        }
    }
}
