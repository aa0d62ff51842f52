import Foundation

/// Everything one `imagectl vm` boot is made of, as plain values: what `QEMUCommand` turns into
/// qemu's argument vector. Paths in it are final (an ephemeral overlay, the concatenated initrd
/// and the private NVRAM copy are already made by `VirtualMachine.prepare`), so building the
/// command line needs no file system access and is unit-tested without qemu.
public struct VMSpec: Sendable, Equatable {
    /// On-disk format of a drive, as qemu's `format=` spells it.
    public enum DiskFormat: String, Sendable, Equatable { case raw, qcow2 }

    public struct Drive: Sendable, Equatable {
        public var path: String
        public var format: DiskFormat
        /// discard=unmap (guest TRIM punches holes in the file) or discard=ignore.
        public var discard: Bool
        public init(path: String, format: DiskFormat, discard: Bool = true) {
            self.path = path
            self.format = format
            self.discard = discard
        }
    }

    public enum Accelerator: String, Sendable, Equatable { case kvm, tcg }

    /// UEFI firmware chosen from a QEMU firmware descriptor.
    public struct FirmwareFiles: Sendable, Equatable {
        public var code: String
        public var codeFormat: DiskFormat
        /// The private, writable copy of the descriptor's NVRAM template (nil: none in the descriptor).
        public var variables: String?
        public var variablesFormat: DiskFormat
        public var secureBoot: Bool
        /// The descriptor's "requires-smm" feature: q35 with smm=on and secure pflash.
        public var requiresSMM: Bool
        public init(code: String, codeFormat: DiskFormat = .raw, variables: String?, variablesFormat: DiskFormat = .raw,
                    secureBoot: Bool, requiresSMM: Bool) {
            self.code = code
            self.codeFormat = codeFormat
            self.variables = variables
            self.variablesFormat = variablesFormat
            self.secureBoot = secureBoot
            self.requiresSMM = requiresSMM
        }
    }

    public enum Boot: Sendable, Equatable {
        /// Direct kernel boot (-kernel/-initrd/-append). `rootPartitionUUID` becomes
        /// root=PARTUUID=... unless the extra arguments already name a root=.
        case direct(kernel: String, initrd: String?, rootPartitionUUID: UUID?)
        /// Boot through UEFI firmware from the image's ESP.
        case firmware(FirmwareFiles)
    }

    public enum Network: Sendable, Equatable {
        case none
        /// qemu's user-mode (SLIRP) network.
        case user
        /// A tap interface on the host named `interface` (qemu creates it; needs root).
        case tap(interface: String)
    }

    public enum Console: String, Sendable, Equatable, CaseIterable {
        /// The serial console on imagectl's terminal, input included.
        case interactive
        /// The serial console's output on imagectl's standard output; no input.
        case readOnly = "read-only"
        /// qemu's own serial/monitor multiplexer on the terminal (Ctrl-A x quits).
        case native
        /// No console; output discarded.
        case headless
    }

    /// A system credential for the guest (systemd reads SMBIOS type 11 strings at boot).
    public struct Credential: Sendable, Equatable {
        public var id: String
        public var value: [UInt8]
        public init(id: String, value: [UInt8]) {
            self.id = id
            self.value = value
        }
    }

    /// The TPM emulator's control socket (swtpm socket --ctrl type=unixio,path=...).
    public struct TPM: Sendable, Equatable {
        public var socketPath: String
        public init(socketPath: String) { self.socketPath = socketPath }
    }

    public var qemuBinary: String
    public var name: String
    public var uuid: UUID
    public var cpus: Int
    public var memoryBytes: UInt64
    public var accelerator: Accelerator
    /// The image's drive; nil when the root is a virtiofs share (`vm -D`).
    public var root: Drive?
    public var extraDrives: [Drive] = []
    public var boot: Boot
    /// Positional arguments: appended to -append with direct boot, else the SMBIOS
    /// io.systemd.stub.kernel-cmdline-extra string.
    public var kernelArguments: [String] = []
    public var credentials: [Credential] = []
    /// Directories shared through virtiofsd (VirtiofsShare.swift): -D's root, --bind.
    public var shares: [Share] = []
    public var network: Network = .none
    /// The MAC address of the VM's NIC on a tap (the one its static DHCP lease is for); nil:
    /// qemu's default.
    public var networkMAC: String?
    public var vsockCID: UInt32?
    public var tpm: TPM?
    public var console: Console = .interactive
    /// qemu's QMP control socket (a Unix socket qemu listens on): what `imagectl poweroff`,
    /// `reboot`, `stop` and `terminate` talk to. nil: none (--print-command).
    public var qmpSocket: String?
    /// The socket `imagectl vm` listens on for its own QMP connection (`QMPMonitor`): qemu
    /// connects to it while it starts, paused (-S) until the runner has negotiated and sent
    /// `cont`, so the runner sees every event. nil: none (--print-command).
    public var monitorSocket: String?
    /// cloud-init's NoCloud seed volume (CloudInitSeed), attached read-only with the SMBIOS
    /// serial ds=nocloud; nil: none.
    public var cloudInitSeed: String?

    public init(qemuBinary: String = "qemu-system-x86_64", name: String, uuid: UUID, cpus: Int = 1,
                memoryBytes: UInt64 = 2 << 30, accelerator: Accelerator, root: Drive?, boot: Boot) {
        self.qemuBinary = qemuBinary
        self.name = name
        self.uuid = uuid
        self.cpus = cpus
        self.memoryBytes = memoryBytes
        self.accelerator = accelerator
        self.root = root
        self.boot = boot
    }
}
