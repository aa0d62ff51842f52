import ArgumentParser
import Dissect
import Foundation
import Network
import ImageStore
import Machines
import VMRunner

/// `imagectl vm -i IMAGE [KERNEL-ARGS...]`: a disk image as a virtual machine under
/// qemu-system-x86_64, with systemd-vmspawn's option names.
struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "Boot a disk image as a virtual machine with qemu (like systemd-vmspawn).",
        discussion: """
            Boots a raw or qcow2 disk image (a file, or an image of the pool) under \
            qemu-system-x86_64: directly with --linux= (and --initrd=), the root partition found \
            in the image's GPT and passed as root=PARTUUID=, or through UEFI firmware (OVMF) found \
            from QEMU's firmware descriptors, which starts the boot loader on the image's ESP. \
            Extra arguments are kernel command line words (appended to the direct boot's command \
            line; otherwise passed as the SMBIOS string io.systemd.stub.kernel-cmdline-extra, \
            which systemd-stub reads). The serial console is on ttyS0.
            Exit status, from the reason in qemu's SHUTDOWN event (read on a QMP connection of \
            imagectl's own): 0 when the guest powered off; 133 when it rebooted (qemu runs with \
            -no-reboot; as nspawn and vmspawn, for a supervisor to start it again: \
            imagectl-vm@.service restarts on 133); 137 when it was terminated from the host \
            without shutting down (QMP quit by imagectl terminate or by stop after its timeout, a \
            signal to qemu, ^] pressed three times); qemu's status when qemu failed (its own \
            message is shown); 1 for a VM that could not be set up or a guest that panicked; 2 \
            for bad options. The guest's EXIT_STATUS= (vsock notify) is not read.
            Stopping: SIGTERM, SIGINT or SIGHUP to imagectl does what imagectl stop does: it \
            presses the guest's ACPI power button (QMP system_powerdown) and tells qemu to quit \
            when the guest has not ended after 90 s (systemd's default stop timeout); a second \
            signal quits at once.
            With --console=interactive on a terminal, the serial line is a pty relayed to the \
            terminal in raw mode (^C goes to the guest; the window size is forwarded); ^] pressed \
            three times within a second kills the VM, as in imagectl run.
            Registered in the machine registry while it runs (kind vm, leader: the qemu process). \
            The image is locked while the VM runs (shared with -x), so a second VM or container \
            of it exits 16; without -i, -M NAME names the pool image to boot. An image with \
            nothing to boot (0 bytes, no partition table or file system, a qcow2 of size 0) is \
            refused before qemu starts.
            -D DIR boots a directory tree (or -M NAME a tree of the pool) with its root file system \
            on virtiofs, as systemd-vmspawn does: virtiofsd (/usr/lib/qemu/virtiofsd) serves the \
            tree as the tag "root" (root=root rootfstype=virtiofs on the command line), started \
            before qemu and stopped when the VM ends. The tree's own newest kernel \
            (/boot/vmlinuz-VERSION, /usr/lib/modules/VERSION/vmlinuz) boots directly with its own \
            initrd, after which imagectl appends a small cpio archive with the tree's virtiofs \
            module and an initramfs-tools boot script (boot=virtiofs), so that a stock Debian tree \
            can mount its root over virtiofs. With -x the tree is shared through a throw-away \
            overlay (a tmpfs upper layer that exists only in virtiofsd's mount namespace) and left \
            unchanged; with --read-only it is shared read-only and booted with ro.
            --bind=SRC[:DST[:OPTIONS]] and --bind-ro= share a host directory through a virtiofsd of \
            its own, mounted in the guest at DST (default: SRC) through \
            systemd.mount-extra=TAG:DST:virtiofs:OPTIONS on the kernel command line (the SMBIOS \
            io.systemd.stub.kernel-cmdline-extra string without direct boot). systemd reads that \
            from version 254 on; with -D the appended initrd mounts them too, so an older guest \
            (Debian 12 has 252) gets them as well. Shares need root.
            cloud-init (--cloud-init=, --cloud-init-user-data=): the NoCloud files go on a small \
            vfat volume labelled CIDATA, made in $IMAGECTL_RUNTIME_DIR/cloud-init (default \
            /run/imagectl) and attached read-only, with the SMBIOS serial ds=nocloud; it is \
            removed when the VM ends (after a kill -9, by the next imagectl vm or run). The \
            instance-id is the machine UUID: a -x boot (random UUID) runs cloud-init's \
            first-boot modules again; a persistent image without --uuid= gets a UUID derived from \
            its path, the same at every boot, so they run once.
            Not available: --forward-journal (the guest's journal over vsock), --private-users \
            (Debian 12's virtiofsd has no ID mapping), the vsock notify socket.
            """)

    @Option(name: [.customShort("i"), .customLong("image")], help: ArgumentHelp("Disk image to boot: a raw or qcow2 file, or the name of a raw image in the pool.", valueName: "image"))
    var image: String?

    @Option(name: [.customShort("D"), .customLong("directory")], help: ArgumentHelp("Directory tree to boot with its root file system on virtiofs (its own kernel and initrd).", valueName: "path"))
    var directory: String?

    @Flag(name: .customLong("read-only"), help: "With -D: share the tree read-only and boot with ro.")
    var readOnly = false

    @Option(name: .customLong("bind"), help: ArgumentHelp("Share a host directory with the guest over virtiofs, mounted at DST (default: SRC) with OPTIONS (repeatable).", valueName: "src[:dst[:options]]"))
    var bind: [String] = []

    @Option(name: .customLong("bind-ro"), help: ArgumentHelp("Like --bind, read-only.", valueName: "src[:dst[:options]]"))
    var bindReadOnly: [String] = []

    @OptionGroup var store: StoreOptions
    /// --json, --no-legend, -l, --no-pager for --firmware=list (-q is the VM's own, below).
    @OptionGroup var format: FormatOptions

    /// One firmware descriptor in --firmware=list --json: the table's columns.
    struct FirmwareRow: Encodable {
        var path: String
        var description: String
    }

    @Flag(name: [.customShort("x"), .customLong("ephemeral")], help: "Boot on a throw-away qcow2 overlay over the image (made with qemu-img, removed on exit); the image is left unchanged.")
    var ephemeral = false

    @Option(name: .customLong("grow-image"), help: ArgumentHelp("Grow the raw image to SIZE bytes (K, M, G, T suffixes; +SIZE: by that much) before qemu starts, sparse, moving its GPT backup to the new end so that the guest's growpart or systemd-repart can use the space; never shrinks. With -x the overlay grows and the image is left unchanged. qcow2 images are refused.", valueName: "size"))
    var growImage: String?

    @OptionGroup var cloudInit: CloudInitOptions

    @Option(name: .customLong("extra-drive"), help: ArgumentHelp("Another raw or qcow2 disk for the VM, after the image (repeatable).", valueName: "path"))
    var extraDrive: [String] = []

    @Option(name: .customLong("discard-disk"), help: ArgumentHelp("yes: the guest's TRIM punches holes in the image files (discard=unmap, the default); no: ignored.", valueName: "bool"))
    var discardDisk: String?

    @Option(name: [.customShort("M"), .customLong("machine")], help: "Machine name (default: the image's file name without .raw/.qcow2); without -i, the pool image of this name is booted, as vmspawn does.", completion: Completions.imageNames)
    var machine: String?

    @Option(name: .customLong("uuid"), help: "Machine UUID, passed as qemu's -uuid (the guest's SMBIOS system UUID; default: random).")
    var uuid: String?

    @Option(name: .customLong("cpus"), help: "Number of virtual CPUs (default 1).")
    var cpus: String?

    @Option(name: .customLong("ram"), help: ArgumentHelp("Memory size, with an optional K, M, G or T suffix (default 2G).", valueName: "bytes"))
    var ram: String?

    @Option(name: .customLong("kvm"), help: ArgumentHelp("auto: KVM when /dev/kvm can run a stock guest, else TCG (default); yes: KVM or an error; no: TCG.", valueName: "auto|yes|no"))
    var kvm: String?

    @OptionGroup var verity: VerityOptions

        @Option(name: .customLong("linux"), help: ArgumentHelp("Boot this kernel directly (qemu -kernel) instead of through UEFI firmware.", valueName: "path"))
    var linux: String?

    @Option(name: .customLong("initrd"), help: ArgumentHelp("Initrd for --linux= (repeatable; several are concatenated into one temporary file).", valueName: "path"))
    var initrd: [String] = []

    @Option(name: .customLong("firmware"), help: ArgumentHelp("A QEMU firmware descriptor (JSON) to use, or \"list\" to print the usable ones from /etc/qemu/firmware and /usr/share/qemu/firmware.", valueName: "path|list"))
    var firmware: String?

    @Option(name: .customLong("secure-boot"), help: ArgumentHelp("yes: the first firmware with Secure Boot; no: the first without (default: the first found).", valueName: "bool"))
    var secureBoot: String?

    @Flag(name: .customLong("network-user-mode"), help: "Give the VM a virtio NIC on qemu's user-mode network (NAT through the host, no root needed).")
    var networkUserMode = false

    @Flag(name: [.customShort("n"), .customLong("network-tap")], help: "Give the VM a virtio NIC on a host tap interface vt-NAME (created by qemu; needs root) with the host side imagectl run -n gives a veth: a /28 from the address pool, DHCP (a static lease for the NIC's MAC) and DNS, outbound NAT.")
    var networkTap = false

    @Option(name: .customLong("vsock"), help: ArgumentHelp("yes: an AF_VSOCK device (needs /dev/vhost-vsock); no: none; auto: when /dev/vhost-vsock exists (default).", valueName: "auto|yes|no"))
    var vsock: String?

    @Option(name: .customLong("vsock-cid"), help: ArgumentHelp("The VM's vsock context ID, 3 to 4294967294 (default: random).", valueName: "cid"))
    var vsockCID: String?

    @Option(name: .customLong("tpm"), help: ArgumentHelp("yes: a TPM 2.0 emulated by swtpm (an error without swtpm); no: none; auto: when swtpm is installed (default).", valueName: "auto|yes|no"))
    var tpm: String?

    @Option(name: .customLong("set-credential"), help: ArgumentHelp("Pass a system credential to the guest (SMBIOS type 11); VALUE takes C escapes such as \\n (repeatable).", valueName: "id:value"))
    var setCredential: [String] = []

    @Option(name: .customLong("load-credential"), help: ArgumentHelp("Pass a file's contents as a system credential (repeatable).", valueName: "id:path"))
    var loadCredential: [String] = []

    @Flag(name: .customLong("pass-ssh-key"), help: "Make a throw-away ssh key pair and pass its public key as the ssh.authorized_keys.root credential; the private key's path is printed, and the key is removed on exit.")
    var passSSHKey = false

    @Option(name: .customLong("ssh-key-type"), help: ArgumentHelp("Type of the --pass-ssh-key key: ed25519 (default) or rsa.", valueName: "type"))
    var sshKeyType: String?

    @Option(name: .customLong("console"), help: ArgumentHelp("interactive: the serial console on this terminal (default); read-only: its output only; native: qemu's serial+monitor mux (Ctrl-A x quits); headless: none.", valueName: "mode"))
    var console: String?

    @Option(name: .customLong("background"), help: ArgumentHelp("Terminal background colour while the VM runs, an ANSI SGR code such as 40 or 48;2;0;0;80 (only when standard output is a terminal and colour is not turned off by $NO_COLOR or $SYSTEMD_COLORS=0).", valueName: "color"))
    var background: String?

    @Flag(name: .customLong("print-command"), help: "Print the qemu command line (shell-quoted) and exit; temporary files it names (overlay, initrd, NVRAM copy, ssh key) are not made.")
    var printCommand = false

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status messages (warnings and errors are still printed).")
    var quiet = false

    @Argument(parsing: .captureForPassthrough, help: "Kernel command line arguments, e.g. systemd.unit=poweroff.target.")
    var kernelArguments: [String] = []

    /// Everything but the image's resolution, from the options.
    func makeRequest(imagePath: String, directory: Bool = false) throws(VMError) -> VMRequest {
        var r = VMRequest(image: imagePath)
        r.directory = directory
        r.readOnly = readOnly
        r.binds = try bind.map { (text: String) throws(VMError) in try VirtiofsShares.parseBind(text, readOnly: false) }
            + bindReadOnly.map { (text: String) throws(VMError) in try VirtiofsShares.parseBind(text, readOnly: true) }
        r.ephemeral = ephemeral
        r.extraDrives = extraDrive
        if let discardDisk { r.discardDisk = try VMOptions.parseBoolean(discardDisk, option: "--discard-disk") }
        r.machineName = machine
        if let uuid {
            guard let parsed = UUID(uuidString: uuid) ?? RunCommand.parseUndashedUUID(uuid) else {
                throw .invalidValue(option: "--uuid", value: uuid, expected: "a UUID")
            }
            r.uuid = parsed
        }
        if let cpus { r.cpus = try VMOptions.parseCPUs(cpus) }
        if let ram {
            r.memoryBytes = try VMOptions.parseSize(ram, option: "--ram")
            guard r.memoryBytes >= 64 << 20 else { throw .invalidValue(option: "--ram", value: ram, expected: "at least 64M") }
        }
        if let kvm { r.kvm = try VMOptions.parseTristate(kvm, option: "--kvm") }
        r.linux = linux
        r.initrds = initrd
        if let firmware {
            guard linux == nil else { throw .invalidValue(option: "--firmware", value: firmware, expected: "no --linux= with it (direct boot uses no firmware)") }
            r.firmwareDescriptor = firmware
        }
        if let secureBoot { r.secureBoot = try VMOptions.parseBoolean(secureBoot, option: "--secure-boot") }
        if networkUserMode && networkTap {
            throw .invalidValue(option: "--network-tap", value: "", expected: "not together with --network-user-mode")
        }
        if networkUserMode { r.network = .user }
        if networkTap { r.network = .tap(interface: String(("vt-" + (machine ?? VirtualMachine.defaultName(for: imagePath))).prefix(15))) }
        if let vsock { r.vsock = try VMOptions.parseTristate(vsock, option: "--vsock") }
        if let vsockCID { r.vsockCID = try VMOptions.parseCID(vsockCID) }
        if let tpm { r.tpm = try VMOptions.parseTristate(tpm, option: "--tpm") }
        var arguments = kernelArguments
        if arguments.first == "--" { arguments.removeFirst() }
        r.kernelArguments = arguments
        r.credentials = try setCredential.map { (text: String) throws(VMError) in try VMOptions.parseSetCredential(text) }
            + loadCredential.map { (text: String) throws(VMError) in try VMOptions.parseLoadCredential(text) }
        r.passSSHKey = passSSHKey
        if let sshKeyType {
            guard ["ed25519", "rsa"].contains(sshKeyType) else { throw .invalidValue(option: "--ssh-key-type", value: sshKeyType, expected: "ed25519 or rsa") }
            r.sshKeyType = sshKeyType
        }
        if let console {
            guard let mode = VMSpec.Console(rawValue: console) else {
                throw .invalidValue(option: "--console", value: console, expected: "interactive, read-only, native or headless")
            }
            r.console = mode
        }
        if let background { _ = try VMOptions.parseBackground(background) }
        if let growImage { r.growImage = (try GrowImage.parse(growImage), growImage) }
        return r
    }

    /// A path (anything with a "/" or an existing file) is used as is; otherwise a pool image
    /// (ImageLookup, as every verb finds it).
    func resolveImage(_ text: String) throws -> (path: String, directory: Bool) {
        let image: Image
        do {
            switch try ImageLookup.resolve(text, root: store.explicitRoot) {
            case .path(let path): return (path, false)
            case .image(let found): image = found
            }
        } catch {
            throw VMError.imageNotFound(text)
        }
        switch image.type {
        case .raw, .block:
            if image.readOnly && !ephemeral {
                throw VMError.imageNotUsable(path: image.path, reason: "is a read-only pool image; use -x/--ephemeral to boot it on a throw-away overlay")
            }
            return (image.path, false)
        case .directory, .subvolume:
            // A tree of the pool boots as -D does.
            if image.readOnly && !ephemeral && !readOnly {
                throw VMError.imageNotUsable(path: image.path, reason: "is a read-only pool image; use -x/--ephemeral or --read-only")
            }
            return (image.path, true)
        }
    }

    /// What admitting the image gave: words for the guest's kernel command line, and how the
    /// image's root and usr are protected (for the machine record, as a container has it).
    struct Admission {
        var kernelWords: [String] = []
        var verityTrust: [VerityTrust] = []
    }

    /// The image policy and verity, before qemu starts (as `run -i` does before mounting): the
    /// image is admitted by ImageAdmission and every verity tree is verified in userspace now
    /// (not for --print-command, which starts nothing): qemu reads the image file, so the
    /// host's dm-verity could not check its reads even where device-mapper exists. The kernel
    /// command line words let the guest's systemd set verity up itself on direct boot:
    /// roothash=/usrhash=, the partitions by PARTUUID, and the dm-verity devices as root and
    /// /usr, read-only.
    func admit(_ path: String, directBoot: Bool) async throws -> Admission {
        // A missing file or a directory is refused by VirtualMachine.prepare with its own words.
        guard FileManager.default.fileExists(atPath: path), !ImageArgument.isDirectory(path) else { return Admission() }
        let given = verity.imagePolicy != nil || !ImageAdmission.givenOptions(verity.explicit).isEmpty
        // Nothing to boot would leave the guest in the firmware's "no bootable option" screen.
        let unbootable = "refusing to start a VM that could only stop in its firmware"
        if VMOptions.detectFormat(path: path) == .qcow2 {
            if VMOptions.qcow2VirtualSize(path: path) == 0 {
                throw CommandFailure(message: "\(path): a qcow2 image of virtual size 0 holds nothing to boot; \(unbootable)")
            }
            guard !given else {
                throw CommandFailure(message: "\(path) is qcow2, whose partitions imagectl cannot read: --image-policy and the verity options cannot be checked")
            }
            return Admission()
        }
        // A regular file only: a FIFO, socket or device is refused by the dissect below in words.
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path),
           attributes[.type] as? FileAttributeType == .typeRegular, attributes[.size] as? UInt64 == 0 {
            throw CommandFailure(message: "\(path) is empty (0 bytes): nothing to boot; \(unbootable)")
        }
        let image: DissectedImage
        do {
            image = try await verity.dissect(path, requireRoot: false)
        } catch Dissector.Error.noPartitionTableOrFilesystem {
            throw CommandFailure(message: "\(path) holds no partition table and no file system: nothing to boot; \(unbootable)")
        } catch let error as Dissector.Error where !given {
            // A layout the dissect rules cannot place (a foreign OS's disk, say), which firmware
            // may still boot: nothing to check.
            _ = error
            return Admission()
        }
        for trust in image.verityTrust { if let warning = trust.warning { Terminal.standardError("warning: \(warning)\n") } }
        let admission = Admission(kernelWords: kernelWords(image, directBoot: directBoot), verityTrust: image.verityTrust)
        guard !printCommand else { return admission }
        let verified = try await ImageAdmission.verifyTrees(image)
        if !quiet {
            for tree in verified {
                Terminal.standardError("\(tree.designator.rawValue): verified the whole verity tree in userspace before starting qemu (\(tree.report.blocksChecked) blocks, \(String(format: "%.2f", tree.report.seconds)) s); the check was one-time, the guest's own dm-verity checks reads from then on\n")
            }
        }
        return admission
    }

    /// roothash=/usrhash= and what goes with them, for direct boot of an image whose hash trees
    /// are partitions of it (the guest sees those; an external hash tree file it cannot see).
    func kernelWords(_ image: DissectedImage, directBoot: Bool) -> [String] {
        guard directBoot else { return [] }
        var words: [String] = []
        let userGaveRoot = kernelArguments.contains { $0.hasPrefix("root=") }
        for designator in [PartitionDesignator.root, .usr] {
            guard let data = image.partition(designator), let requirement = MountPlan.requirement(data, image: image),
                  requirement.hashFile == nil, let dataUUID = data.uuid,
                  let hashUUID = designator.verityDesignator.flatMap(image.partition)?.uuid else { continue }
            let name = designator.rawValue
            let hash = VerityHex.encode(requirement.rootHash)
            words.append(designator == .root ? "roothash=\(hash)" : "usrhash=\(hash)")
            words.append("systemd.verity_\(name)_data=PARTUUID=\(dataUUID.uuidString.lowercased())")
            words.append("systemd.verity_\(name)_hash=PARTUUID=\(hashUUID.uuidString.lowercased())")
            if designator == .root, !userGaveRoot { words += ["root=/dev/mapper/root", "ro"] }
            if designator == .usr, !kernelArguments.contains(where: { $0.hasPrefix("mount.usr=") }) { words.append("mount.usr=/dev/mapper/usr") }
        }
        return words
    }

    func run() async throws {
        if let first = kernelArguments.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option \(first)")
        }
        if firmware == "list" {
            let descriptors = FirmwareDescriptor.discover()
            if format.json {
                try Output.printJSON(descriptors.map { FirmwareRow(path: $0.path, description: $0.description) },
                                     pretty: format.jsonMode != .short)
            } else if descriptors.isEmpty {
                if format.table.legend { Terminal.standardOutput("No firmware.\n") }
            } else {
                Output.printTable(header: ["path", "description"], rows: descriptors.map { [$0.path, $0.description] },
                                  footer: "\(descriptors.count) firmware descriptor\(descriptors.count == 1 ? "" : "s") listed.",
                                  style: format.table)
            }
            return
        }
        if image != nil && directory != nil { throw ValidationError("-i and -D name the same thing: give one") }
        let path: String
        let isTree: Bool
        if let directory {
            guard ImageArgument.isDirectory(directory) else {
                throw CommandFailure(message: "-D \(directory): not a directory")
            }
            (path, isTree) = (URL(fileURLWithPath: directory).standardizedFileURL.path, true)
        } else {
            // As vmspawn: without -i, the machine name names the image (found as every verb finds one).
            guard let image = image ?? machine else { throw ValidationError("no image given (-i IMAGE, -D DIR, or -M NAME of a pool image)") }
            (path, isTree) = try resolveImage(image)
        }
        if readOnly && !isTree { throw ValidationError("--read-only needs a directory tree (-D); a disk image boots read-only with -x") }
        if growImage != nil && isTree { throw ValidationError("--grow-image grows a raw disk image; a directory tree (-D) has no size to grow") }
        // Locked while the VM runs, as run locks a tree or image: exclusive, as the guest writes
        // to it; shared under -x, where only the overlay is written.
        var lock: ImageLock?
        defer { lock?.release() }
        if !printCommand, FileManager.default.fileExists(atPath: path) {
            lock = try ImageLock.lock(path: path, kind: ephemeral || (isTree && readOnly) ? .shared : .exclusive)
        }
        var request = try makeRequest(imagePath: path, directory: isTree)
        if cloudInit.requested || cloudInit.sshKey != nil {
            // instance-id is the machine UUID, so it is fixed now rather than by prepare: random
            // for -x (a new instance), derived from the image's path for a persistent image.
            let uuid = request.uuid ?? (ephemeral ? UUID() : CloudInitData.stableUUID(for: path))
            request.uuid = uuid
            request.cloudInit = try cloudInit.load(instanceID: uuid, hostname: request.machineName ?? VirtualMachine.defaultName(for: path),
                                                   sshPublicKey: try cloudInit.publicKey())
        }
        // The tap's host side is prepared now (its /28, the NIC's MAC) and attached once qemu
        // made the tap; undone when the VM ends.
        var network: HostNetwork?
        defer { network?.tearDown() }
        if case .tap = request.network, !printCommand {
            var settings = NetworkSettings()
            settings.veth = true
            network = try HostNetwork.prepare(settings, machine: machine ?? VirtualMachine.defaultName(for: path), forTap: true)
            request.networkMAC = network?.machineMAC?.description
        }
        let admission = try await admit(path, directBoot: request.linux != nil)
        request.kernelArguments = admission.kernelWords + request.kernelArguments
        request.verityTrust = admission.verityTrust
        let vm = try VirtualMachine.prepare(request, dryRun: printCommand)
        for warning in vm.warnings { Terminal.standardError("warning: \(warning)\n") }
        if printCommand {
            Terminal.standardOutput(QEMUCommand.shellQuoted(QEMUCommand.arguments(for: vm.spec)) + "\n")
            return
        }
        if !quiet {
            let how: String = switch vm.spec.boot {
            case .direct where isTree: "direct kernel boot, root on virtiofs"
            case .direct: "direct kernel boot"
            case .firmware(let files): "UEFI firmware \(files.code)"
            }
            for note in vm.notes { Terminal.standardError(note + "\n") }
            Terminal.standardError("Booting \(path) as VM \(vm.spec.name) (\(vm.spec.accelerator == .kvm ? "KVM" : "TCG"), \(how)).\n")
            if let key = vm.sshPrivateKey { Terminal.standardError("SSH private key for root: \(key) (removed when the VM ends).\n") }
            if VirtualMachine.relaysConsole(vm.spec) { Terminal.standardError(VirtualMachine.consoleHint + "\n") }
        }
        let outcome = try VirtualMachine.run(vm, background: Diagnostics.coloursEnabled(for: STDOUT_FILENO) ? background : nil, addresses: network?.containerAddress.map { ["\($0.address)"] }) { pid in
            if let network, case .tap(let interface) = vm.spec.network { try network.attachTap(interface) }
        } warn: { Terminal.standardError("warning: \($0)\n") }
        let name = vm.spec.name
        // How a stop begun by a signal went: said even with -q when it had to quit qemu, as
        // imagectl run says a container was killed.
        switch outcome.stop {
        case .quitAfterTimeout(let signo, let seconds):
            Terminal.standardError("VM \(name) did not power off within \(Int(seconds)) s of \(Signals.name(signo)); terminated (QMP quit).\n")
        case .quitOnSecondSignal(let signo):
            Terminal.standardError("VM \(name) terminated (QMP quit) on a second \(Signals.name(signo)).\n")
        case .quitBeforeStart(let signo):
            Terminal.standardError("VM \(name) terminated (QMP quit) on \(Signals.name(signo)) before the guest started.\n")
        case .poweroffRequested, nil:
            break
        }
        if let failure = outcome.failure { throw CommandFailure(message: failure, status: outcome.exitStatus) }
        switch outcome.ending {
        case .terminated(.escape):
            // Said even with -q, as imagectl run does: the user ended the VM by force.
            Terminal.standardError("\nVM \(name) killed: ^] was pressed three times.\n")
        case .terminated(let how) where outcome.stop?.quit != true:
            let by = switch how {
            case .quit: "QMP quit"
            case .qemuSignal: "qemu got a signal to quit"
            case .qemuConsole: "from qemu's console"
            case .escape: "^]"
            }
            // Even with -q, as imagectl run says a container was killed.
            Terminal.standardError("VM \(name) terminated (\(by)); the guest did not shut down.\n")
        case .panicked:
            throw CommandFailure(message: "the guest of VM \(name) panicked", status: outcome.exitStatus)
        case .poweredOff:
            if !quiet { Terminal.standardError("VM \(name) powered off.\n") }
        case .rebooted(let byHost):
            if !quiet { Terminal.standardError(byHost ? "VM \(name) was reset by the host (QMP system_reset).\n" : "VM \(name) is being rebooted.\n") }
        case .unexplained(let reason):
            if !quiet { Terminal.standardError("VM \(name) ended; qemu did not say the guest powered off (\(reason.map { "shutdown reason \($0)" } ?? "no shutdown event")).\n") }
        case .terminated, nil:
            break
        }
        if outcome.exitStatus != 0 { throw ExitCode(outcome.exitStatus) }
    }
}
