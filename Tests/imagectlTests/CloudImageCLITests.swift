import Foundation
import Testing
import TestSupport

/// Cloud images end to end: `resize` and `vm --grow-image` (the GPT moved to the new end, as
/// sfdisk checks it), cloud-init NoCloud data for `vm` and `run` (the cloud-debian fixture booted
/// under TCG, ~1-2 min each, one at a time), and the bad input that must start nothing.
@Suite(.serialized) struct CloudImageCLITests {
    /// A small GPT disk for the bad-input tests (nothing boots).
    static func scratchImage() throws -> (TemporaryDirectory, String) {
        let box = try TemporaryDirectory(prefix: "imagectl-cloud", under: "/var/tmp")
        let image = box.appending("disk.raw")
        try GrowImageCLITests.makeGPTDisk(image)
        return (box, image)
    }

    @Test("vm: bad cloud-init data: one error line, nothing started or left")
    func vmBadInput() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .tool("sfdisk"))
        let (box, image) = try Self.scratchImage()
        let runtime = try TemporaryDirectory(prefix: "imagectl-cloud-run")
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-cloud-tmp", under: "/var/tmp")
        let environment = ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path]
        try GrowImageCLITests.sh("""
            cd \(box.path) && head -c 1048577 /dev/zero | tr '\\0' 'x' | sed '1s/^/#cloud-config\\n/' > big &&
            printf 'users: []\\n' > plain && printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0 test\\n' > key.pub &&
            printf 'not a key\\n' > bad.pub
            """)
        let cases: [([String], String)] = [
            (["--cloud-init-user-data=" + box.appending("big")], "larger than 1 MiB"),
            (["--cloud-init-user-data=" + box.appending("plain")], "starts with neither #cloud-config nor #!"),
            (["--cloud-init=" + box.appending("missing")], "no such directory"),
            (["--cloud-init=" + box.appending("plain")], "is not a directory"),
            (["--cloud-init-user-data=" + box.appending("missing")], "no such file"),
            (["--cloud-init=defaults", "--ssh-key=" + box.appending("bad.pub")], "is not an ssh public key"),
        ]
        for (options, message) in cases {
            let r = try Imagectl.run(["vm", "-i", image, "--console=read-only", "--kvm=no"] + options, environment: environment)
            GrowImageCLITests.expectOneErrorLine(r, containing: message)
        }
        #expect(GrowImageCLITests.size(image) == 64 << 20)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.appending("cloud-init"))) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: vmTemp.path)) ?? []).isEmpty)
        // --ssh-key alone gives cloud-init nothing: a usage error.
        let keyAlone = try Imagectl.run(["vm", "-i", image, "--ssh-key=" + box.appending("key.pub")], environment: environment)
        #expect(keyAlone.status == 2, "\(keyAlone.stderr)")

        // A good seed shows up in the command line: the CIDATA volume read-only, the SMBIOS hint.
        let printed = try Imagectl.run(["vm", "-i", image, "--print-command", "--kvm=no", "--cloud-init=defaults",
                                        "--ssh-key=" + box.appending("key.pub"), "--grow-image=+1G"], environment: environment)
        #expect(printed.status == 0, "\(printed.stderr)")
        #expect(printed.stdout.contains("cloud-init/") && printed.stdout.contains(".img,format=raw,if=virtio,readonly=on"), "\(printed.stdout)")
        #expect(printed.stdout.contains("type=1,serial=ds=nocloud"), "\(printed.stdout)")
        // --print-command starts and changes nothing.
        #expect(GrowImageCLITests.size(image) == 64 << 20)
    }

    @Test("run: bad cloud-init data is one error line and starts nothing")
    func runBadInput() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let tree = try #require(Fixtures.path("busybox-tree"))
        let box = try TemporaryDirectory(prefix: "imagectl-cloud-in")
        let runtime = try TemporaryDirectory(prefix: "imagectl-cloud-run")
        try GrowImageCLITests.sh("printf 'hello\\n' > \(box.appending("plain"))")
        for (option, message) in [("--cloud-init=" + box.appending("missing"), "no such directory"),
                                  ("--cloud-init-user-data=" + box.appending("plain"), "starts with neither")] {
            let r = try Imagectl.run(["run", "-q", "-x", "-D", tree, option, "/bin/true"], environment: ["IMAGECTL_RUNTIME_DIR": runtime.path])
            GrowImageCLITests.expectOneErrorLine(r, containing: message)
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.appending("cloud-init"))) ?? []).isEmpty)
        // A seed left by an imagectl killed with -9 (its PID gone) goes with the next run.
        var stalePID: Int32 = 4_000_000
        while kill(stalePID, 0) == 0 || errno != ESRCH { stalePID -= 1 }
        try FileManager.default.createDirectory(atPath: runtime.appending("cloud-init/\(stalePID).d"), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: runtime.appending("cloud-init/\(stalePID).img"), contents: Data("x".utf8))
        let ok = try Imagectl.run(["run", "-q", "-x", "-D", tree, "/bin/true"], environment: ["IMAGECTL_RUNTIME_DIR": runtime.path])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.appending("cloud-init"))) ?? []).isEmpty)
    }

    @Test("import-raw of the cloud fixture as Debian ships it (tar.xz of disk.raw) and as qcow2 gives the raw image")
    func importTheFixtureForms() throws {
        try Privileged.require(.fixture("cloud-debian.raw"), .fixture("cloud-debian.tar.xz"), .fixture("cloud-debian.qcow2"))
        let raw = try #require(Fixtures.path("cloud-debian.raw"))
        let box = try TemporaryDirectory(prefix: "imagectl-cloud-import", under: "/var/tmp")
        let pool = box.appending("pool")
        for (form, name) in [("cloud-debian.tar.xz", "fromtar"), ("cloud-debian.qcow2", "fromqcow2")] {
            let r = try Imagectl.run(["import-raw", try #require(Fixtures.path(form)), name], root: pool)
            #expect(r.status == 0, "\(form): \(r.stderr)")
            try GrowImageCLITests.sh("cmp \(raw) \(pool)/\(name).raw")
            // Sparse like the fixture: far fewer blocks than bytes.
            let blocks = UInt64(try GrowImageCLITests.sh("stat -c %b \(pool)/\(name).raw").trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
            #expect(blocks * 512 < GrowImageCLITests.size(raw) * 3 / 4, "\(form): \(blocks) blocks")
        }
    }

    // MARK: - The cloud-debian fixture under TCG

    /// Kernel command line words every boot here gets (VMCLITests.guestWords: no_timer_check).
    static let guestWords = VMCLITests.guestWords

    /// The fixture tree's own kernel and initrd (Debian's linux-image-amd64 in the image).
    static func fixtureKernel() throws -> (kernel: String, initrd: String) {
        let tree = try #require(Fixtures.path("cloud-tree"))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tree + "/boot")) ?? []
        let kernel = try #require(names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last)
        return (tree + "/boot/" + kernel, tree + "/boot/initrd.img-" + kernel.dropFirst("vmlinuz-".count))
    }

    static let publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LWZvci1pbWFnZWN0bC1jbG91ZC10ZXN0cw imagectl-test"

    @Test(.timeLimit(.minutes(8)))
    func ephemeralBootWithUserDataAndGrownDisk() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .fixture("cloud-debian.raw"), .fixture("cloud-tree"))
        let image = try #require(Fixtures.path("cloud-debian.raw"))
        let (kernel, initrd) = try Self.fixtureKernel()
        let box = try TemporaryDirectory(prefix: "imagectl-cloud-in")
        let runtime = try TemporaryDirectory(prefix: "imagectl-cloud-run")
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-cloud-tmp", under: "/var/tmp")
        let userData = box.appending("user-data")
        try """
            #cloud-config
            users:
              - name: cloudtest
                shell: /bin/sh
                ssh_authorized_keys:
                  - \(Self.publicKey)
            runcmd:
              - |
                echo "imagectl-cloud-marker: runcmd ran" > /dev/console
                echo "imagectl-cloud-disk: $(lsblk -bdno SIZE /dev/vda)" > /dev/console
                id cloudtest > /dev/null && grep -q "$(echo \(Self.publicKey) | cut -d' ' -f2)" /home/cloudtest/.ssh/authorized_keys && echo "imagectl-cloud-user: cloudtest has the key" > /dev/console
                systemctl --no-block poweroff

            """.write(toFile: userData, atomically: true, encoding: .utf8)
        let before = GrowImageCLITests.size(image)
        let modified = try FileManager.default.attributesOfItem(atPath: image)[.modificationDate] as? Date
        let r = try Imagectl.run(["vm", "-x", "-i", image, "--linux=" + kernel, "--initrd=" + initrd, "--console=read-only",
                                  "--ram=1G", "--cpus=2", "--kvm=no", "--cloud-init-user-data=" + userData, "--grow-image=+1G"]
                                 + Self.guestWords,
                                 environment: ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path])
        #expect(r.status == 0, "\(r.stdout.suffix(3000)) \(r.stderr)")
        #expect(r.stdout.contains("imagectl-cloud-marker: runcmd ran"), "\(r.stdout.suffix(3000))")
        #expect(r.stdout.contains("imagectl-cloud-disk: \(before + (1 << 30))"), "\(r.stdout.suffix(3000))")
        #expect(r.stdout.contains("imagectl-cloud-user: cloudtest has the key"), "\(r.stdout.suffix(3000))")
        #expect(r.stderr.contains("Grew the -x overlay from \(before) to \(before + (1 << 30)) bytes, GPT backup moved"), "\(r.stderr)")
        // -x: the image itself is neither grown nor written; the seed volume is gone.
        #expect(GrowImageCLITests.size(image) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: image)[.modificationDate] as? Date == modified)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.appending("cloud-init"))) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: vmTemp.path)) ?? []).isEmpty)
    }

    @Test(.timeLimit(.minutes(12)))
    func persistentImageRunsFirstBootOnce() throws {
        try Privileged.require(.root, .tool("qemu-system-x86_64"), .fixture("cloud-debian.raw"), .fixture("cloud-tree"))
        let (kernel, initrd) = try Self.fixtureKernel()
        let scratch = try TemporaryDirectory(prefix: "imagectl-cloud", under: "/var/tmp")
        let runtime = try TemporaryDirectory(prefix: "imagectl-cloud-run")
        let vmTemp = try TemporaryDirectory(prefix: "imagectl-cloud-tmp", under: "/var/tmp")
        let image = scratch.appending("cloud.raw")
        try Tool.run("cp", ["--sparse=always", "--reflink=auto", try #require(Fixtures.path("cloud-debian.raw")), image])
        let seed = scratch.appending("seed")
        try FileManager.default.createDirectory(atPath: seed, withIntermediateDirectories: true)
        // bootcmd runs at every boot; cloud-init-per instance only once per instance-id. The
        // per-boot script (written once by write_files) reports both counts and the ssh host
        // key, which cloud-init's ssh module makes once per instance, then powers off.
        try """
            #cloud-config
            bootcmd:
              - echo boot >> /var/lib/imagectl-boots
              - cloud-init-per instance imagectl-first sh -c 'echo once >> /var/lib/imagectl-first'
            write_files:
              - path: /var/lib/cloud/scripts/per-boot/imagectl-report
                permissions: '0755'
                content: |
                  #!/bin/sh
                  echo "imagectl-cloud-count: boots=$(wc -l < /var/lib/imagectl-boots) first=$(wc -l < /var/lib/imagectl-first) hostkey=$(cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub | cut -c30-68) host=$(hostname)" > /dev/console
                  systemctl --no-block poweroff

            """.write(toFile: seed + "/user-data", atomically: true, encoding: .utf8)
        var reports: [String] = []
        for boot in 1...2 {
            let r = try Imagectl.run(["vm", "-i", image, "-M", "cloudy", "--linux=" + kernel, "--initrd=" + initrd,
                                      "--console=read-only", "--ram=1G", "--cpus=2", "--kvm=no", "--cloud-init=" + seed] + Self.guestWords,
                                     environment: ["IMAGECTL_VM_TMPDIR": vmTemp.path, "IMAGECTL_RUNTIME_DIR": runtime.path])
            #expect(r.status == 0, "boot \(boot): \(r.stdout.suffix(3000)) \(r.stderr)")
            // (The serial console ends lines with "\r\n", one Character to Swift: split on both.)
            let line = r.stdout.split(whereSeparator: \.isNewline).first { $0.contains("imagectl-cloud-count: ") }
            try #require(line != nil, "boot \(boot): \(r.stdout.suffix(3000))")
            reports.append(String(line!.split(separator: "imagectl-cloud-count: ").last ?? ""))
        }
        #expect(reports[0].hasPrefix("boots=1 first=1 "), "\(reports)")
        #expect(reports[1].hasPrefix("boots=2 first=1 "), "\(reports)")
        // The host key of the first boot is still there: the ssh module did not run again.
        let keys = reports.map { $0.split(separator: " ").first { $0.hasPrefix("hostkey=") } }
        #expect(keys[0] != nil && keys[0] == keys[1] && keys[0] != "hostkey=", "\(reports)")
        // local-hostname of the default meta-data: the machine name.
        #expect(reports.allSatisfy { $0.hasSuffix("host=cloudy") }, "\(reports)")
    }

    @Test(.timeLimit(.minutes(5)))
    func containerBootRunsUserData() throws {
        try Privileged.require(.root, .fixture("cloud-tree"))
        let tree = try #require(Fixtures.path("cloud-tree"))
        let seed = try TemporaryDirectory(prefix: "imagectl-cloud-seed")
        let runtime = try TemporaryDirectory(prefix: "imagectl-cloud-run")
        try """
            #cloud-config
            runcmd:
              - |
                echo "imagectl-cloud-marker: runcmd ran in $(systemd-detect-virt -c) as $(hostname)" > /dev/console
                systemctl --no-block poweroff

            """.write(toFile: seed.appending("user-data"), atomically: true, encoding: .utf8)
        let r = try Tool.run("timeout", ["240", Imagectl.binary, "run", "-q", "-b", "-x", "-D", tree, "-M", "cloudbox",
                                         "--cloud-init=" + seed.path],
                             environment: ["IMAGECTL_RUNTIME_DIR": runtime.path])
        #expect(r.status == 0, "\(r.stdout.suffix(3000)) \(r.stderr)")
        #expect(r.stdout.contains("imagectl-cloud-marker: runcmd ran in "), "\(r.stdout.suffix(3000))")
        #expect(r.stdout.contains(" as cloudbox"), "\(r.stdout.suffix(3000))")
        // The seed directory went with the container; the tree has no seed written into it.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime.appending("cloud-init"))) ?? []).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: tree + "/var/lib/cloud"))
    }
}
