import CShims
import Dissect
import Foundation
import LinuxSystem
import Machines
import Synchronization
import SystemPackage

/// What the user asked `imagectl vm` for, before any file is made.
public struct VMRequest: Sendable {
    /// The image file (a store name is resolved by the CLI), or with `directory` the tree.
    public var image: String
    /// -D: `image` is a directory tree, booted with its root on virtiofs (DirectoryBoot.swift).
    public var directory = false
    /// --read-only: the tree shared read-only, "ro" on the kernel command line (-D only).
    public var readOnly = false
    /// --bind=/--bind-ro=: directories shared through virtiofs.
    public var binds: [VMSpec.BindRequest] = []
    public var ephemeral = false
    public var extraDrives: [String] = []
    public var discardDisk = true
    public var machineName: String?
    public var uuid: UUID?
    public var cpus = 1
    public var memoryBytes: UInt64 = 2 << 30
    public var kvm: VMOptions.Tristate = .auto
    public var linux: String?
    public var initrds: [String] = []
    /// A firmware descriptor path (--firmware=PATH); nil: discovery.
    public var firmwareDescriptor: String?
    public var secureBoot: Bool?
    public var network: VMSpec.Network = .none
    /// See VMSpec.networkMAC.
    public var networkMAC: String?
    public var vsock: VMOptions.Tristate = .auto
    public var vsockCID: UInt32?
    public var tpm: VMOptions.Tristate = .auto
    public var kernelArguments: [String] = []
    public var credentials: [VMSpec.Credential] = []
    public var passSSHKey = false
    public var sshKeyType = "ed25519"
    public var console: VMSpec.Console = .interactive
    /// How the image's root and usr are protected (ImageAdmission's outcome), for the machine
    /// record as a container's has it; empty for an image without verity or a qcow2.
    public var verityTrust: [VerityTrust] = []
    /// --grow-image= (GrowImage.swift): the size, and the option's text for messages.
    public var growImage: (size: GrowImage.Size, text: String)?
    /// --cloud-init data (CloudInitSeed.swift): becomes a vfat volume labelled CIDATA.
    public var cloudInit: CloudInitData?

    public init(image: String) { self.image = image }
}

/// A VM ready to start: its spec and the temporary files it refers to. `cleanUp()` removes them
/// (and stops swtpm); it runs on every exit path of `VirtualMachine.run` and of a failed prepare.
public final class PreparedVM: @unchecked Sendable {
    // @unchecked: the mutable state (the swtpm process) is touched only by the one thread that
    // prepares, runs and cleans up the VM.
    public let spec: VMSpec
    /// The image booted (absolute), as the machine registry shows it.
    public let image: String
    public let warnings: [String]
    /// The private ssh key made for --pass-ssh-key (lives until cleanUp()).
    public let sshPrivateKey: String?
    /// VMRequest.verityTrust, for the machine record.
    public var verityTrust: [VerityTrust] = []
    /// Status lines for the user (what --grow-image did), printed unless -q.
    public internal(set) var notes: [String] = []
    let workspace: Workspace
    var swtpm: Process?
    /// One per share, stopped by cleanUp() (they also end once qemu has gone).
    var virtiofsds: [Virtiofsd] = []

    init(spec: VMSpec, image: String, warnings: [String], sshPrivateKey: String?, workspace: Workspace, swtpm: Process?) {
        self.spec = spec
        self.image = image
        self.warnings = warnings
        self.sshPrivateKey = sshPrivateKey
        self.workspace = workspace
        self.swtpm = swtpm
    }

    public var temporaryDirectory: String { workspace.path }

    public func cleanUp() {
        if let swtpm { PreparedVM.stop(swtpm) }
        swtpm = nil
        for daemon in virtiofsds { daemon.stop() }
        if !virtiofsds.isEmpty { img_spawn_guard_clear() }
        virtiofsds = []
        workspace.remove()
        if workspace.created, let seed = spec.cloudInitSeed { unlink(seed) }
    }

    /// Ends swtpm: SIGTERM, and SIGKILL when it is still there after two seconds. swtpm blocks
    /// SIGTERM while it polls its sockets and was seen (on a loaded machine) never to take it,
    /// which left `imagectl vm` waiting forever after qemu had ended.
    static func stop(_ swtpm: Process) {
        guard swtpm.isRunning else { return }
        swtpm.terminate()
        let deadline = Date(timeIntervalSinceNow: 2)
        while swtpm.isRunning && Date() < deadline { usleep(20_000) }
        if swtpm.isRunning { kill(swtpm.processIdentifier, SIGKILL) }
        swtpm.waitUntilExit()
    }

    deinit { cleanUp() }
}

/// A private directory for a VM's temporary files (mode 0700, under /var/tmp: an overlay of a
/// large image should not land in a RAM-backed /tmp).
final class Workspace: Sendable {
    let path: String
    let created: Bool

    init(create: Bool, base: String = ProcessInfo.processInfo.environment["IMAGECTL_VM_TMPDIR"] ?? "/var/tmp") throws(VMError) {
        path = base + "/imagectl-vm-" + UUID().uuidString.lowercased().prefix(12)
        created = create
        guard create else { return }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .setupFailed("cannot create a temporary directory in \(base): \(error.localizedDescription)")
        }
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() {
        if created { try? FileManager.default.removeItem(atPath: path) }
    }
}

public enum VirtualMachine {
    /// The qemu binary on PATH (or /usr/bin), or nil.
    public static func findTool(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
            let candidate = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Checks the request and makes what the VM needs: the overlay (-x), the concatenated initrd,
    /// the NVRAM copy, the ssh key pair, swtpm. With `dryRun` nothing is created: the spec names
    /// the paths those files would have (for --print-command).
    public static func prepare(_ request: VMRequest, host: VMOptions.KVMHost = .probe(), dryRun: Bool = false) throws -> PreparedVM {
        // Checks that need no files first, so bad input leaves nothing behind.
        guard let qemu = findTool("qemu-system-x86_64") else { throw VMError.toolMissing("qemu-system-x86_64") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: request.image, isDirectory: &isDirectory) else { throw VMError.imageNotFound(request.image) }
        if request.directory {
            guard isDirectory.boolValue else { throw VMError.imageNotUsable(path: request.image, reason: "is not a directory (-D boots a directory tree)") }
        } else {
            guard !isDirectory.boolValue else { throw VMError.imageNotUsable(path: request.image, reason: "is a directory; imagectl vm boots disk images (raw or qcow2), or directory trees with -D") }
            if request.readOnly { throw VMError.invalidValue(option: "--read-only", value: "", expected: "-D (a disk image is made read-only with -x)") }
            // Every file handed to qemu or read here is checked on an O_NONBLOCK descriptor first: a
            // FIFO or character device would hang the format probe (or qemu) instead of failing.
            try checkFileType(request.image, accepting: .image)
        }
        let imagePath = URL(fileURLWithPath: request.image).standardizedFileURL.path
        let virtiofsd = try checkShares(request)
        if !request.ephemeral && !request.readOnly && !FileManager.default.isWritableFile(atPath: imagePath) {
            throw VMError.imageNotUsable(path: imagePath, reason: "is read-only; use -x/--ephemeral to boot it on a throw-away overlay")
        }
        for drive in request.extraDrives {
            guard FileManager.default.fileExists(atPath: drive) else { throw VMError.missingFile(option: "--extra-drive", path: drive) }
            try checkFileType(drive, accepting: .image, option: "--extra-drive")
        }
        if let linux = request.linux {
            guard FileManager.default.fileExists(atPath: linux) else { throw VMError.missingFile(option: "--linux", path: linux) }
            try checkFileType(linux, accepting: .regular, option: "--linux")
        }
        for initrd in request.initrds {
            guard FileManager.default.fileExists(atPath: initrd) else { throw VMError.missingFile(option: "--initrd", path: initrd) }
            try checkFileType(initrd, accepting: .regular, option: "--initrd")
        }
        if !request.initrds.isEmpty && request.linux == nil {
            throw VMError.invalidValue(option: "--initrd", value: request.initrds[0], expected: "--linux= as well (an initrd needs a kernel to boot directly)")
        }
        let name = request.machineName ?? defaultName(for: imagePath)
        guard MachineRecord.isValidName(name) else { throw VMError.invalidMachineName(name) }

        var warnings: [String] = []
        let (accelerator, kvmWarning) = try VMOptions.chooseAccelerator(request.kvm, host: host)
        if let kvmWarning { warnings.append(kvmWarning) }
        warnings += shareWarnings(request, tree: imagePath)

        let vhostVsock = FileManager.default.fileExists(atPath: "/dev/vhost-vsock")
        var vsockCID: UInt32?
        switch request.vsock {
        case .yes:
            guard vhostVsock else { throw VMError.facilityMissing(option: "--vsock=yes", reason: "/dev/vhost-vsock does not exist (load the vhost_vsock module)") }
            vsockCID = request.vsockCID ?? UInt32.random(in: 3...0xFFFF_FFFE)
        case .auto:
            if let cid = request.vsockCID {
                guard vhostVsock else { throw VMError.facilityMissing(option: "--vsock-cid", reason: "/dev/vhost-vsock does not exist (load the vhost_vsock module)") }
                vsockCID = cid
            } else if vhostVsock {
                vsockCID = UInt32.random(in: 3...0xFFFF_FFFE)
            }
        case .no:
            if request.vsockCID != nil { throw VMError.invalidValue(option: "--vsock-cid", value: String(request.vsockCID ?? 0), expected: "no --vsock=no with it") }
        }

        let swtpmPath = findTool("swtpm")
        if request.tpm == .yes && swtpmPath == nil {
            throw VMError.facilityMissing(option: "--tpm=yes", reason: "swtpm is not installed (Debian package swtpm)")
        }
        let useTPM = request.tpm != .no && swtpmPath != nil

        // Firmware descriptor (UEFI boot only).
        var descriptor: FirmwareDescriptor?
        if request.linux == nil && !request.directory {
            if let path = request.firmwareDescriptor {
                descriptor = try FirmwareDescriptor.load(path: path)
                if let secureBoot = request.secureBoot, descriptor?.secureBoot != secureBoot {
                    throw VMError.noFirmware("firmware descriptor \(path) does \(secureBoot ? "not " : "")support secure boot, contrary to --secure-boot=\(secureBoot ? "yes" : "no")")
                }
            } else {
                let all = FirmwareDescriptor.discover()
                guard let chosen = FirmwareDescriptor.select(all, secureBoot: request.secureBoot) else {
                    if all.isEmpty { throw VMError.noFirmware("no UEFI firmware descriptor found in \(FirmwareDescriptor.searchDirectories.joined(separator: ", ")) (install ovmf, or boot directly with --linux=)") }
                    throw VMError.noFirmware("no UEFI firmware \(request.secureBoot == true ? "with" : "without") secure boot found")
                }
                descriptor = chosen
            }
        }

        // The root partition's UUID, for direct boot (unless the user gave root=).
        var rootUUID: UUID?
        let imageFormat = request.directory ? .raw : VMOptions.detectFormat(path: imagePath)
        if request.linux != nil && !request.directory && !request.kernelArguments.contains(where: { $0.hasPrefix("root=") }) {
            guard imageFormat == .raw else {
                throw VMError.imageNotUsable(path: imagePath, reason: "is qcow2, whose partitions imagectl cannot read; give root=... as an argument")
            }
            let dissected: DissectedImage
            do {
                dissected = try Dissector.dissect(path: imagePath, options: DissectOptions(requireRoot: false, loadSignaturePartitions: false))
            } catch {
                throw VMError.imageNotUsable(path: imagePath, reason: "cannot be dissected: \(error)")
            }
            guard let uuid = dissected.partition(.root)?.uuid else { throw VMError.noRootPartition(imagePath) }
            rootUUID = uuid
        }

        // --grow-image is checked now (a size below the image's, a qcow2, a damaged GPT), so
        // bad input leaves nothing behind; the image grows below, with the other files.
        if let grow = request.growImage {
            _ = try GrowImage.plan(imagePath, size: grow.size, option: "--grow-image", value: grow.text)
        }

        // From here on files are made; any failure removes them.
        if !dryRun { CloudInitSeed.removeStale() }
        let workspace = try Workspace(create: !dryRun)
        var swtpm: Process?
        var virtiofsds: [Virtiofsd] = []
        var seed: String?
        do {
            var rootDrive: VMSpec.Drive? = request.directory ? nil : VMSpec.Drive(path: imagePath, format: imageFormat, discard: request.discardDisk)
            var notes: [String] = []
            if let grow = request.growImage, !request.ephemeral, !request.directory, !dryRun {
                notes += GrowImage.describe(try GrowImage.grow(imagePath, to: grow.size, value: grow.text), path: imagePath)
            }
            if request.ephemeral && !request.directory {
                let overlay = workspace.file("overlay.qcow2")
                if !dryRun, let grow = request.growImage {
                    let grown = try GrowImage.growOverlay(base: imagePath, overlay: overlay, scratch: workspace.path, to: grow.size, value: grow.text)
                    notes += GrowImage.describe(grown, path: "the -x overlay")
                } else if !dryRun {
                    try runTool("qemu-img", ["create", "-q", "-f", "qcow2", "-F", imageFormat.rawValue, "-b", imagePath, overlay])
                }
                rootDrive = VMSpec.Drive(path: overlay, format: .qcow2, discard: request.discardDisk)
            }

            let boot: VMSpec.Boot
            if request.directory {
                boot = try directoryBoot(request, tree: imagePath, workspace: workspace, dryRun: dryRun)
            } else if let linux = request.linux {
                var initrd: String?
                if request.initrds.count == 1 {
                    initrd = request.initrds[0]
                } else if request.initrds.count > 1 {
                    // The kernel unpacks concatenated cpio archives in order; qemu takes one file.
                    let joined = workspace.file("initrd")
                    if !dryRun { try concatenate(request.initrds, into: joined) }
                    initrd = joined
                }
                boot = .direct(kernel: linux, initrd: initrd, rootPartitionUUID: rootUUID)
            } else {
                guard let descriptor else { throw VMError.noFirmware("no firmware") }
                var variables: String?
                if let template = descriptor.nvramTemplate {
                    let copy = workspace.file("efivars.fd")
                    if !dryRun {
                        do {
                            try FileManager.default.copyItem(atPath: template, toPath: copy)
                        } catch {
                            throw VMError.setupFailed("cannot copy the NVRAM template \(template): \(error.localizedDescription)")
                        }
                    }
                    variables = copy
                }
                boot = .firmware(VMSpec.FirmwareFiles(code: descriptor.code, codeFormat: descriptor.codeFormat, variables: variables,
                                                      variablesFormat: descriptor.nvramFormat, secureBoot: descriptor.secureBoot,
                                                      requiresSMM: descriptor.requiresSMM))
            }

            var spec = VMSpec(qemuBinary: qemu, name: name, uuid: request.uuid ?? UUID(), cpus: request.cpus,
                              memoryBytes: request.memoryBytes, accelerator: accelerator, root: rootDrive, boot: boot)
            spec.extraDrives = request.extraDrives.map { path in
                let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
                return VMSpec.Drive(path: absolute, format: VMOptions.detectFormat(path: absolute), discard: request.discardDisk)
            }
            spec.shares = plannedShares(request, tree: request.directory ? imagePath : nil)
            spec.kernelArguments = VirtiofsShares.kernelWords(spec.shares) + request.kernelArguments
            spec.credentials = request.credentials
            spec.network = request.network
            spec.networkMAC = request.networkMAC
            spec.vsockCID = vsockCID
            spec.console = request.console

            var sshKey: String?
            var cloudInit = request.cloudInit
            if request.passSSHKey {
                let key = workspace.file("ssh-key")
                var publicKey = "(public key of \(key))"
                if !dryRun {
                    try runTool("ssh-keygen", ["-q", "-t", request.sshKeyType, "-N", "", "-C", "imagectl-vm-\(name)", "-f", key])
                    guard let data = FileManager.default.contents(atPath: key + ".pub") else { throw VMError.setupFailed("ssh-keygen wrote no public key") }
                    publicKey = String(decoding: data, as: UTF8.self)
                }
                // What systemd-vmspawn passes: sshd in the guest (systemd-ssh-generator, or a unit
                // reading the credential) installs it for root.
                spec.credentials.append(VMSpec.Credential(id: "ssh.authorized_keys.root", value: Array(publicKey.utf8)))
                sshKey = key
                if var data = cloudInit, data.userDataIsDefault {
                    data.userData = CloudInitData.defaultUserData(sshPublicKey: publicKey)
                    cloudInit = data
                }
            }
            if let cloudInit {
                spec.cloudInitSeed = dryRun ? CloudInitSeed.path : try CloudInitSeed.make(cloudInit)
                seed = spec.cloudInitSeed
            }

            if useTPM, let swtpmPath {
                let state = workspace.file("tpm")
                let socket = workspace.file("tpm.sock")
                if !dryRun {
                    try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: swtpmPath)
                    process.arguments = ["socket", "--tpm2", "--tpmstate", "dir=" + state, "--ctrl", "type=unixio,path=" + socket, "--terminate"]
                    process.standardInput = FileHandle.nullDevice
                    try process.run()
                    swtpm = process
                    // swtpm creates the socket before it accepts; qemu fails if it is not there yet.
                    var waited = 0
                    while !FileManager.default.fileExists(atPath: socket) && process.isRunning && waited < 500 {
                        Thread.sleep(forTimeInterval: 0.01)
                        waited += 1
                    }
                    guard FileManager.default.fileExists(atPath: socket) else { throw VMError.toolFailed(tool: "swtpm", message: "its socket \(socket) did not appear") }
                }
                spec.tpm = VMSpec.TPM(socketPath: socket)
            }
            if !dryRun, let virtiofsd {
                virtiofsds = try startShares(spec.shares, ephemeralRoot: request.ephemeral, binary: virtiofsd, workspace: workspace)
            }
            let prepared = PreparedVM(spec: spec, image: imagePath, warnings: warnings, sshPrivateKey: sshKey, workspace: workspace, swtpm: swtpm)
            prepared.verityTrust = request.verityTrust
            prepared.virtiofsds = virtiofsds
            prepared.notes = notes
            return prepared
        } catch {
            for daemon in virtiofsds { daemon.stop() }
            if !virtiofsds.isEmpty { img_spawn_guard_clear() }
            if let swtpm { PreparedVM.stop(swtpm) }
            workspace.remove()
            if let seed, !dryRun { unlink(seed) }
            throw error
        }
    }

    /// The machine name from the image file: its name without .raw/.qcow2/.img.
    public static func defaultName(for path: String) -> String {
        var base = URL(fileURLWithPath: path).lastPathComponent
        for suffix in [".raw", ".qcow2", ".img"] where base.hasSuffix(suffix) {
            base.removeLast(suffix.count)
            break
        }
        return base
    }

    /// `UserFile.check` with the refusal as a VMError naming the option (the message names the
    /// path already: "--linux: /dev/zero is a character device, not a regular file").
    static func checkFileType(_ path: String, accepting: UserFile.Kinds, option: String? = nil) throws(VMError) {
        do {
            try UserFile.check(path, accepting: accepting)
        } catch {
            throw VMError.setupFailed(option.map { "\($0): \(error)" } ?? "\(error)")
        }
    }

    static func concatenate(_ paths: [String], into output: String) throws(VMError) {
        guard FileManager.default.createFile(atPath: output, contents: nil, attributes: [.posixPermissions: 0o600]),
              let out = FileHandle(forWritingAtPath: output) else { throw VMError.setupFailed("cannot create \(output)") }
        defer { try? out.close() }
        for path in paths {
            // Opened through UserFile again: the path was checked in prepare, but a FIFO swapped
            // in since must not block here.
            guard let descriptor = try? UserFile.open(path, accepting: .regular).descriptor else {
                throw VMError.missingFile(option: "--initrd", path: path)
            }
            let input = FileHandle(fileDescriptor: descriptor.rawValue, closeOnDealloc: true)
            defer { try? input.close() }
            do {
                while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty { try out.write(contentsOf: chunk) }
            } catch {
                throw VMError.setupFailed("concatenating initrds: \(path): \(error.localizedDescription)")
            }
        }
    }

    /// Runs a helper tool to completion; its stderr becomes the error. `environment` is added
    /// to imagectl's own.
    static func runTool(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws(VMError) {
        guard let path = findTool(name) else { throw .toolMissing(name) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        do { try process.run() } catch { throw .toolFailed(tool: name, message: error.localizedDescription) }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw .toolFailed(tool: name, message: text.isEmpty ? "exit status \(process.terminationStatus)" : text)
        }
    }
}

extension VirtualMachine {
    /// Seconds a SIGTERM/SIGINT to `imagectl vm` waits for the guest to power off (after the
    /// ACPI power button) before qemu is told to quit: `imagectl stop`'s default and the
    /// container runner's, systemd's default stop timeout. A second signal quits at once.
    public static let stopTimeout = MachineControl.defaultStopTimeout

    /// How the guest ended, from qemu's SHUTDOWN event.
    public enum Ending: Sendable, Equatable {
        /// The guest powered off (guest-shutdown). Exit status 0.
        case poweredOff
        /// The guest rebooted (guest-reset: qemu runs with -no-reboot), or the host reset it
        /// (QMP system_reset: `byHost`). Exit status 133, as nspawn and vmspawn, for a
        /// supervisor to start it again.
        case rebooted(byHost: Bool)
        /// Ended from the host without the guest shutting down. Exit status 137, as a
        /// container's SIGKILL.
        case terminated(Termination)
        /// The guest said it panicked (guest-panic). Exit status 1.
        case panicked
        /// qemu exited 0 without a SHUTDOWN event imagectl knows (the reason it gave, if any).
        /// Exit status 0: nothing failed, but nothing says the guest powered off either.
        case unexplained(String?)

        public enum Termination: Sendable, Equatable {
            /// QMP quit: `imagectl terminate`, `imagectl stop` after its timeout, or imagectl's
            /// own stop after a signal (see `Outcome.stop`).
            case quit
            /// qemu got SIGTERM, SIGINT or SIGHUP itself (`imagectl kill`, say).
            case qemuSignal
            /// qemu's own console (^A x in --console=native).
            case qemuConsole
            /// ^] pressed three times on the interactive console: qemu was killed.
            case escape
        }

        public var exitStatus: Int32 {
            switch self {
            case .poweredOff, .unexplained: 0
            case .rebooted: 133
            case .terminated: 128 + SIGKILL
            case .panicked: 1
            }
        }

        init(_ cause: QMPShutdownCause?) {
            switch cause {
            case .guestPoweroff: self = .poweredOff
            case .guestReset: self = .rebooted(byHost: false)
            case .hostReset: self = .rebooted(byHost: true)
            case .guestPanic: self = .panicked
            case .hostQuit: self = .terminated(.quit)
            case .hostSignal: self = .terminated(.qemuSignal)
            case .hostUI: self = .terminated(.qemuConsole)
            case .other(let reason): self = .unexplained(reason)
            case nil: self = .unexplained(nil)
            }
        }
    }

    /// What a SIGTERM/SIGINT/SIGHUP to imagectl did (nil: none came).
    public enum StopBySignal: Sendable, Equatable {
        /// The ACPI power button was pressed; the guest ended within the timeout.
        case poweroffRequested(signal: Int32)
        /// The guest did not end within `stopTimeout` seconds: qemu was told to quit.
        case quitAfterTimeout(signal: Int32, seconds: Double)
        /// A second signal: qemu was told to quit at once.
        case quitOnSecondSignal(signal: Int32)
        /// The signal came before the guest started: qemu was told to quit.
        case quitBeforeStart(signal: Int32)

        /// True when imagectl told qemu to quit.
        public var quit: Bool {
            if case .poweroffRequested = self { return false }
            return true
        }
    }

    /// How a VM run ended, as imagectl's exit status.
    public struct Outcome: Sendable, Equatable {
        /// `ending.exitStatus`, or qemu's status when qemu failed (128+N when it died of
        /// signal N).
        public var exitStatus: Int32
        /// Set when qemu failed (its own message went to standard error before).
        public var failure: String?
        /// How the guest ended; nil when qemu failed.
        public var ending: Ending?
        /// What a signal to imagectl did, if one came.
        public var stop: StopBySignal?
    }

    /// Runs qemu for a prepared VM until it exits; the VM's temporary files are removed on
    /// every path. `background` is an SGR colour for the terminal while the VM runs.
    ///
    /// The VM is in `registry` from the moment qemu has a PID until it ends, as a container is
    /// from its PID 1's start, so that `imagectl machines` lists it; its record names qemu's QMP
    /// socket ($IMAGECTL_RUNTIME_DIR/qmp/PID.sock), through which `imagectl poweroff` presses
    /// the ACPI power button, `reboot` sends ctrl-alt-delete, and `stop` and `terminate` end it.
    /// imagectl keeps a QMP connection of its own (`QMPMonitor`, a socket in the VM's
    /// temporary directory), from which it learns how the guest ended and through which a
    /// SIGTERM/SIGINT to imagectl powers the guest off (`stopTimeout`).
    /// A live machine of the same name is an error (busy); a registry this process cannot write
    /// (not root) only costs those verbs, and is said through `warn`. `started` runs first once
    /// qemu has a PID (the host side of a tap, which qemu has made by then); `addresses` go into
    /// the record.
    public static func run(_ vm: PreparedVM, background: String? = nil, registry: MachineRegistry = MachineRegistry(),
                           addresses: [String]? = nil, started hostSide: (Int32) throws -> Void = { _ in },
                           warn: (String) -> Void = { _ in }) throws -> Outcome {
        defer { vm.cleanUp() }
        var registration: MachineRegistration?
        defer { registration?.unregister() }
        // The control socket, named after this imagectl (short: a socket path has 108 bytes).
        var spec = vm.spec
        let qmpDirectory = RuntimeDirectory.path + "/qmp"
        if (try? FileSystem.makeDirectories(qmpDirectory, mode: 0o700)) != nil {
            spec.qmpSocket = qmpDirectory + "/\(ProcessInfo.processInfo.processIdentifier).sock"
        } else {
            warn("no QMP socket in \(qmpDirectory): imagectl poweroff, reboot and stop cannot ask the guest")
        }
        defer { if let socket = spec.qmpSocket { unlink(socket) } }
        let monitor: QMPMonitor
        do {
            monitor = try QMPMonitor(listeningAt: vm.workspace.file("monitor.sock"))
        } catch {
            throw VMError.setupFailed("imagectl's QMP socket: \(error)")
        }
        defer { monitor.close() }
        spec.monitorSocket = monitor.path
        let started = { [spec] (pid: Int32) throws in
            try hostSide(pid)
            var machine = MachineRecord(
                name: spec.name, kind: .vm, leader: pid, supervisor: ProcessInfo.processInfo.processIdentifier,
                root: vm.image, uuid: spec.uuid, started: Date(), stopSignal: SIGTERM)
            machine.qmpSocket = spec.qmpSocket
            var record = VMRecord(machine: machine)
            if !vm.verityTrust.isEmpty { record.verity = vm.verityTrust }
            record.machine.addresses = addresses
            do throws(MachineError) {
                registration = try registry.register(record)
            } catch {
                if error.isBusy { throw error }
                warn("not registered as a machine: \(error)")
            }
        }
        let colour = background.flatMap { QEMUProcess.standardOutputIsTerminal && (spec.console == .interactive || spec.console == .readOnly) ? $0 : nil }
        if let colour { FileHandle.standardOutput.write(Data("\u{1B}[\(colour)m\u{1B}[K".utf8)) }
        defer { if colour != nil { FileHandle.standardOutput.write(Data("\u{1B}[0m\u{1B}[K".utf8)) } }
        let connectInput = spec.console == .interactive || spec.console == .native
        let arguments = QEMUCommand.arguments(for: spec)
        let outcome: QEMUProcess.Outcome
        var escaped = false
        if relaysConsole(spec) {
            (outcome, escaped) = try runWithConsoleRelay(arguments, monitor: monitor, started: started)
        } else {
            outcome = try QEMUProcess.run(arguments, connectStandardInput: connectInput, monitor: monitor,
                                          stopTimeout: stopTimeout, started: started)
        }
        return Self.outcome(outcome, escaped: escaped)
    }

    /// What qemu's end means for the user.
    static func outcome(_ process: QEMUProcess.Outcome, escaped: Bool) -> Outcome {
        var stop: StopBySignal?
        if let signo = process.receivedSignal {
            switch process.stop {
            case .none, .poweroffRequested: stop = .poweroffRequested(signal: signo)
            case .quitAfterTimeout(let seconds): stop = .quitAfterTimeout(signal: signo, seconds: seconds)
            case .quitOnSecondSignal: stop = .quitOnSecondSignal(signal: signo)
            case .quitBeforeStart: stop = .quitBeforeStart(signal: signo)
            }
        }
        if escaped {
            return Outcome(exitStatus: 128 + SIGKILL, failure: nil, ending: .terminated(.escape), stop: stop)
        }
        switch process.termination {
        case .exited(0):
            let ending = Ending(process.shutdown)
            return Outcome(exitStatus: ending.exitStatus, failure: nil, ending: ending, stop: stop)
        case .exited(let status):
            return Outcome(exitStatus: status, failure: "qemu-system-x86_64 failed with exit status \(status)", ending: nil, stop: stop)
        case .signaled(let signo):
            // SIGKILL after a quit that qemu did not answer is still the stop that was asked for.
            if signo == SIGKILL, let stop, stop.quit {
                return Outcome(exitStatus: 128 + SIGKILL, failure: nil, ending: .terminated(.quit), stop: stop)
            }
            return Outcome(exitStatus: 128 + signo, failure: "qemu-system-x86_64 was killed by signal \(signo)", ending: nil, stop: stop)
        }
    }
}

extension VirtualMachine {
    /// The interactive console on a terminal, as `imagectl run` has it: qemu's serial line
    /// (its stdio chardev) is a pty of imagectl's, relayed to the user's terminal in raw mode by
    /// the ConsoleRelay of containers on a thread of its own, with the window size forwarded and ^]
    /// pressed three times within a second killing qemu. qemu's own stdio on the user's
    /// terminal would leave no place for that escape.
    static func runWithConsoleRelay(_ arguments: [String], monitor: QMPMonitor, started: (Int32) throws -> Void) throws -> (QEMUProcess.Outcome, Bool) {
        let pty = try QEMUProcess.openPseudoTerminal()
        defer { QEMUProcess.closeDescriptor(pty.master) }
        let relay = ConsoleRelay(console: FileDescriptor(rawValue: pty.master))
        let relayDone = DispatchSemaphore(value: 0)
        let ending = Mutex<ConsoleRelay.Ending?>(nil)
        let thread = Thread {
            let result = try? relay.run()
            ending.withLock { $0 = result }
            // Killed outright, as nspawn and vmspawn do on the escape: the user asked to end it now.
            if result == .escape { QEMUProcess.signalQEMU(SIGKILL) }
            relayDone.signal()
        }
        let outcome: QEMUProcess.Outcome
        var relayStarted = false
        do {
            outcome = try QEMUProcess.run(arguments, connectStandardInput: true, console: pty.slave, monitor: monitor,
                                          stopTimeout: stopTimeout) { pid in
                try started(pid)
                thread.start()
                relayStarted = true
            }
        } catch {
            // qemu is gone, so a started relay sees the pty hang up and ends.
            if relayStarted { relayDone.wait() }
            throw error
        }
        relayDone.wait()
        return (outcome, ending.withLock { $0 } == .escape)
    }

    /// What the interactive console prints before it starts (nspawn's words, for a VM).
    public static let consoleHint = "Press ^] three times within 1s to kill the VM."

    /// Whether `run` relays the console through a pty (interactive mode on a terminal).
    public static func relaysConsole(_ spec: VMSpec) -> Bool {
        spec.console == .interactive && QEMUProcess.standardInputIsTerminal
    }
}
