import Foundation

/// VMSpec -> qemu-system-x86_64 argument vector. Pure: no file system access, no environment,
/// so every option is unit-tested without qemu.
public enum QEMUCommand {
    /// The full argument vector, program first.
    public static func arguments(for spec: VMSpec) -> [String] {
        var args = [spec.qemuBinary]
        var machine = "type=q35,accel=\(spec.accelerator.rawValue)"
        if case .firmware(let firmware) = spec.boot, firmware.requiresSMM { machine += ",smm=on" }
        args += ["-machine", machine]
        // TCG keeps qemu's default CPU model; "host" passes KVM's CPU through.
        if spec.accelerator == .kvm { args += ["-cpu", "host"] }
        args += ["-smp", String(spec.cpus)]
        args += ["-m", memoryArgument(spec.memoryBytes)]
        args += ["-uuid", spec.uuid.uuidString.lowercased()]
        args += ["-name", "guest=" + escapeOptionValue(spec.name)]
        // No default NIC, VGA, serial, parallel or monitor: each device below is asked for.
        // -no-reboot turns the guest's reboot into qemu's exit, as systemd-vmspawn does.
        args += ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
        // Entropy for the guest's early boot (otherwise getrandom() may stall under TCG).
        args += ["-device", "virtio-rng-pci"]
        args += consoleArguments(spec.console)
        // wait=off: qemu starts the guest at once and accepts the connection whenever it comes.
        if let qmp = spec.qmpSocket { args += ["-qmp", "unix:" + escapeOptionValue(qmp) + ",server=on,wait=off"] }
        // The runner's own QMP connection: qemu connects to imagectl's socket as it starts and
        // waits, paused, for imagectl's `cont`.
        if let monitor = spec.monitorSocket {
            args += ["-chardev", "socket,id=imagectl-monitor,path=" + escapeOptionValue(monitor),
                     "-mon", "chardev=imagectl-monitor,mode=control", "-S"]
        }

        switch spec.boot {
        case .firmware(let firmware):
            args += ["-drive", "if=pflash,format=\(firmware.codeFormat.rawValue),unit=0,readonly=on,file=" + escapeOptionValue(firmware.code)]
            if let variables = firmware.variables {
                args += ["-drive", "if=pflash,format=\(firmware.variablesFormat.rawValue),unit=1,file=" + escapeOptionValue(variables)]
            }
            if firmware.requiresSMM {
                args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
            }
        case .direct(let kernel, let initrd, let rootUUID):
            args += ["-kernel", kernel]
            if let initrd { args += ["-initrd", initrd] }
            args += ["-append", directKernelCommandLine(rootPartitionUUID: rootUUID, extra: spec.kernelArguments)]
        }

        for drive in [spec.root].compactMap({ $0 }) + spec.extraDrives {
            args += ["-drive", driveArgument(drive)]
        }
        args += virtiofsArguments(for: spec)
        args += CloudInitSeed.arguments(seed: spec.cloudInitSeed)

        switch spec.network {
        case .none: break
        case .user: args += ["-nic", "user,model=virtio-net-pci"]
        case .tap(let interface):
            let mac = spec.networkMAC.map { ",mac=\(escapeOptionValue($0))" } ?? ""
            args += ["-nic", "tap,ifname=\(escapeOptionValue(interface)),script=no,downscript=no,model=virtio-net-pci\(mac)"]
        }
        if let cid = spec.vsockCID {
            args += ["-device", "vhost-vsock-pci,guest-cid=\(cid)"]
        }
        if let tpm = spec.tpm {
            args += ["-chardev", "socket,id=chrtpm,path=" + escapeOptionValue(tpm.socketPath),
                     "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                     "-device", "tpm-tis,tpmdev=tpm0"]
        }
        for credential in spec.credentials {
            args += ["-smbios", "type=11,value=" + escapeOptionValue(smbiosCredentialString(credential))]
        }
        if case .firmware = spec.boot, !spec.kernelArguments.isEmpty {
            // Read by systemd-stub (a UKI) and systemd-boot: extra kernel command line words.
            let text = "io.systemd.stub.kernel-cmdline-extra=" + spec.kernelArguments.joined(separator: " ")
            args += ["-smbios", "type=11,value=" + escapeOptionValue(text)]
        }
        return args
    }

    /// The serial console wiring for each console mode.
    static func consoleArguments(_ console: VMSpec.Console) -> [String] {
        switch console {
        case .interactive, .readOnly:
            // signal=off: ^C reaches the guest instead of killing qemu; imagectl's standard
            // input is /dev/null in read-only mode, so nothing is typed.
            ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
        case .native:
            ["-serial", "mon:stdio"]
        case .headless:
            ["-serial", "null"]
        }
    }

    /// root=, rw (unless the words say ro), the serial console, then the user's words (a user
    /// root= wins).
    public static func directKernelCommandLine(rootPartitionUUID: UUID?, extra: [String]) -> String {
        var words: [String] = []
        if let rootPartitionUUID, !extra.contains(where: { $0.hasPrefix("root=") }) {
            words.append("root=PARTUUID=" + rootPartitionUUID.uuidString.lowercased())
        }
        // A read-only root (--read-only, verity) says "ro" among the extra words.
        if !extra.contains("ro") { words.append("rw") }
        words.append("console=ttyS0")
        return (words + extra).joined(separator: " ")
    }

    static func driveArgument(_ drive: VMSpec.Drive) -> String {
        "file=\(escapeOptionValue(drive.path)),format=\(drive.format.rawValue),if=virtio,discard=\(drive.discard ? "unmap" : "ignore")"
    }

    /// qemu's -m takes MiB; a size that is not a whole MiB is rounded up.
    static func memoryArgument(_ bytes: UInt64) -> String {
        let mib = (bytes / (1 << 20)) + (bytes % (1 << 20) == 0 ? 0 : 1)
        return "\(mib)M"
    }

    /// SMBIOS type 11 string systemd imports as a system credential: the text form when the
    /// value is printable UTF-8, else base64 under io.systemd.credential.binary:.
    public static func smbiosCredentialString(_ credential: VMSpec.Credential) -> String {
        if isPrintableText(credential.value) {
            return "io.systemd.credential:\(credential.id)=" + String(decoding: credential.value, as: UTF8.self)
        }
        return "io.systemd.credential.binary:\(credential.id)=" + Data(credential.value).base64EncodedString()
    }

    static func isPrintableText(_ bytes: [UInt8]) -> Bool {
        guard let text = String(validating: bytes, as: UTF8.self) else { return false }
        return text.unicodeScalars.allSatisfy { $0 == "\n" || $0 == "\t" || !($0.properties.generalCategory == .control) }
    }

    /// In qemu's KEY=VALUE,KEY=VALUE options a literal comma is written twice.
    public static func escapeOptionValue(_ value: String) -> String {
        value.replacingOccurrences(of: ",", with: ",,")
    }

    /// The command line as a POSIX shell would read it back (for --print-command).
    public static func shellQuoted(_ arguments: [String]) -> String {
        arguments.map(shellQuote).joined(separator: " ")
    }

    public static func shellQuote(_ word: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
        if !word.isEmpty && word.allSatisfy({ safe.contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
