import Foundation
import Testing
import TestSupport
@testable import VMRunner

/// virtiofs shares: --bind parsing, the qemu arguments and kernel words, the initrd appendix's
/// module order and boot script, the tree's kernel choice. Pure functions, no qemu.
struct VirtiofsTests {
    static func spec(shares: [VMSpec.Share]) -> VMSpec {
        var spec = VMSpec(name: "t", uuid: UUID(), memoryBytes: 1 << 30, accelerator: .tcg, root: nil,
                          boot: .direct(kernel: "/w/linux", initrd: "/w/initrd", rootPartitionUUID: nil))
        spec.shares = shares
        spec.kernelArguments = VirtiofsShares.kernelWords(shares)
        return spec
    }

    @Test func bindForms() throws {
        let plain = try VirtiofsShares.parseBind("/srv/data", readOnly: false)
        #expect(plain == VMSpec.BindRequest(source: "/srv/data", target: "/srv/data", options: [], readOnly: false))
        let full = try VirtiofsShares.parseBind("/srv/data:/mnt/x/:noatime,nodev", readOnly: true)
        #expect(full == VMSpec.BindRequest(source: "/srv/data", target: "/mnt/x", options: ["ro", "noatime", "nodev"], readOnly: true))
        let defaultTarget = try VirtiofsShares.parseBind("/a::noexec", readOnly: false)
        #expect(defaultTarget.target == "/a" && defaultTarget.options == ["noexec"])
        for bad in ["relative", "/a:relative", "/a:/b:c:d", "/a:/", "/a b:/c", "/a:/b\\c", ""] {
            #expect(throws: VMError.self, "\(bad)") { try VirtiofsShares.parseBind(bad, readOnly: false) }
        }
    }

    @Test func rootAndBindsOnTheCommandLine() {
        let root = VMSpec.Share(tag: "root", socketPath: "/run/i/vfs/1-root.sock", source: "/t", readOnly: false, guestPath: nil)
        let bind = VMSpec.Share(tag: "bind0", socketPath: "/run/i/vfs/1-bind0.sock", source: "/h,x", readOnly: true,
                                guestPath: "/mnt/x", guestOptions: ["ro"])
        let args = QEMUCommand.arguments(for: Self.spec(shares: [root, bind]))
        let line = args.joined(separator: " ")
        #expect(line.contains("-object memory-backend-memfd,id=mem,size=1024M,share=on -numa node,memdev=mem"))
        #expect(line.contains("-chardev socket,id=vfs-root,path=/run/i/vfs/1-root.sock -device vhost-user-fs-pci,queue-size=1024,chardev=vfs-root,tag=root"))
        #expect(line.contains("-chardev socket,id=vfs-bind0,path=/run/i/vfs/1-bind0.sock -device vhost-user-fs-pci,queue-size=1024,chardev=vfs-bind0,tag=bind0"))
        #expect(!args.contains("-drive"))
        let append = args[args.firstIndex(of: "-append")! + 1]
        #expect(append == "rw console=ttyS0 root=root rootfstype=virtiofs boot=virtiofs systemd.mount-extra=bind0:/mnt/x:virtiofs:ro")
        // A read-only root: ro, no rw.
        var readOnlyRoot = root
        readOnlyRoot.readOnly = true
        let roArgs = QEMUCommand.arguments(for: Self.spec(shares: [readOnlyRoot]))
        #expect(roArgs[roArgs.firstIndex(of: "-append")! + 1] == "console=ttyS0 root=root rootfstype=virtiofs boot=virtiofs ro")
        // No shares: no shared memory either.
        #expect(!QEMUCommand.arguments(for: Self.spec(shares: [])).contains("-numa"))
    }

    @Test func moduleLoadOrderFromModulesDep() {
        let dep = """
            kernel/fs/fuse/fuse.ko:
            kernel/fs/fuse/cuse.ko: kernel/fs/fuse/fuse.ko
            kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
            kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
            """
        #expect(InitrdAppendix.loadOrder(modulesDep: dep, module: "virtiofs") == [
            "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/fs/fuse/fuse.ko", "kernel/fs/fuse/virtiofs.ko",
        ])
        #expect(InitrdAppendix.loadOrder(modulesDep: dep, module: "nosuch") == nil)
        #expect(InitrdAppendix.moduleName("kernel/fs/fuse/virtio-fs.ko.xz") == "virtio_fs")
    }

    /// The generated initramfs-tools script is valid sh and loads the modules in order.
    @Test func bootScriptIsValidShell() throws {
        let modules = [InitrdAppendix.Module(name: "fuse", path: "/usr/lib/modules/v/kernel/fs/fuse/fuse.ko"),
                       InitrdAppendix.Module(name: "virtiofs", path: "/usr/lib/modules/v/kernel/fs/fuse/virtiofs.ko")]
        let script = InitrdAppendix.bootScript(modules: modules)
        let dir = try TemporaryDirectory(prefix: "imagectl-vfs-script")
        let path = dir.path + "/virtiofs"
        try Data(script.utf8).write(to: URL(fileURLWithPath: path))
        let check = try Tool.run("sh", ["-n", path])
        #expect(check.status == 0, "\(check.stderr)")
        let fuse = try #require(script.range(of: "insmod /imagectl-virtiofs/fuse.ko"))
        let virtiofs = try #require(script.range(of: "insmod /imagectl-virtiofs/virtiofs.ko"))
        #expect(fuse.lowerBound < virtiofs.lowerBound)
        for function in ["mountroot()", "mount_top()", "mount_premount()", "mount_bottom()"] { #expect(script.contains(function)) }
    }

    /// The mount-extra parsing of the boot script, run by sh with mount and mkdir stubbed: the
    /// tag, the directory below ${rootmnt} and the options.
    @Test func bootScriptMountsExtraShares() throws {
        let dir = try TemporaryDirectory(prefix: "imagectl-vfs-script")
        let script = dir.path + "/virtiofs"
        try Data(InitrdAppendix.bootScript(modules: []).utf8).write(to: URL(fileURLWithPath: script))
        let cmdline = dir.path + "/cmdline"
        try Data("console=ttyS0 systemd.mount-extra=bind0:/mnt/x:virtiofs systemd.mount-extra=bind1:/srv/y:virtiofs:ro,noatime systemd.mount-extra=/dev/sda:/z:ext4\n".utf8)
            .write(to: URL(fileURLWithPath: cmdline))
        let driver = """
            mount() { echo "mount $*"; }
            mkdir() { :; }
            cat() { command cat \(cmdline); }
            rootmnt=/root
            . \(script)
            virtiofs_mount_extra
            """
        let r = try Tool.run("sh", ["-c", driver])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "mount -t virtiofs bind0 /root/mnt/x\nmount -t virtiofs -o ro,noatime bind1 /root/srv/y\n", "\(r.stdout)")
    }

    /// overlayfs reads "," and ":" in its options as separators: a tree path holding them is
    /// escaped.
    @Test func overlayOptionsEscapeSeparators() {
        #expect(Virtiofsd.OverlayPlan.escape("/srv/a,b:c\\d") == "/srv/a\\,b\\:c\\\\d")
        let plan = Virtiofsd.OverlayPlan(tree: "/t,1", layers: "/w/share-root", owner: stat(), readOnly: false)
        #expect(plan.options == "lowerdir=/t\\,1,upperdir=/w/share-root/upper,workdir=/w/share-root/work")
    }

    @Test func kernelVersionsCompareAsVersions() {
        #expect(TreeKernel.compareVersions("6.1.0-9-amd64", "6.1.0-10-amd64"))
        #expect(!TreeKernel.compareVersions("6.10.0-1-amd64", "6.9.0-1-amd64"))
        #expect(TreeKernel.compareVersions("5.10", "5.10.1"))
    }

    @Test func bzImageVersionFromTheSetupHeader() {
        var bytes = [UInt8](repeating: 0, count: 0x1000)
        bytes.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        bytes[0x20e] = 0x00
        bytes[0x20f] = 0x08 // 0x800 + 0x200
        let text = Array("6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP".utf8)
        bytes.replaceSubrange(0xa00..<(0xa00 + text.count), with: text)
        #expect(TreeKernel.bzImageVersion(bytes) == "6.1.0-57-amd64")
        #expect(TreeKernel.bzImageVersion([UInt8](repeating: 0, count: 0x1000)) == nil)
    }
}
