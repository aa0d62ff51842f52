import Foundation
import Testing
import Machines
@testable import VMRunner

/// The qemu command line for each VMSpec setting, without qemu.
@Suite struct VMCommandTests {
    static let uuid = UUID(uuidString: "11111111-2222-4333-8444-555555555555")!
    static let root = UUID(uuidString: "5CA1AB1E-0000-4000-8000-00000000A001")!

    func directSpec() -> VMSpec {
        VMSpec(qemuBinary: "/usr/bin/qemu-system-x86_64", name: "deb", uuid: Self.uuid, cpus: 2, memoryBytes: 1 << 30,
               accelerator: .tcg, root: VMSpec.Drive(path: "/img/deb.raw", format: .raw),
               boot: .direct(kernel: "/boot/vmlinuz", initrd: "/boot/initrd.img", rootPartitionUUID: Self.root))
    }

    /// The value following `option` each time it occurs.
    func values(_ args: [String], _ option: String) -> [String] {
        args.indices.filter { args[$0] == option && $0 + 1 < args.count }.map { args[$0 + 1] }
    }

    @Test func directBootBasics() {
        let args = QEMUCommand.arguments(for: directSpec())
        #expect(args.first == "/usr/bin/qemu-system-x86_64")
        #expect(values(args, "-machine") == ["type=q35,accel=tcg"])
        #expect(!args.contains("-cpu"))
        #expect(values(args, "-smp") == ["2"])
        #expect(values(args, "-m") == ["1024M"])
        #expect(values(args, "-uuid") == ["11111111-2222-4333-8444-555555555555"])
        #expect(values(args, "-name") == ["guest=deb"])
        #expect(args.contains("-no-reboot") && args.contains("-nodefaults"))
        #expect(values(args, "-kernel") == ["/boot/vmlinuz"])
        #expect(values(args, "-initrd") == ["/boot/initrd.img"])
        #expect(values(args, "-append") == ["root=PARTUUID=5ca1ab1e-0000-4000-8000-00000000a001 rw console=ttyS0"])
        #expect(values(args, "-drive") == ["file=/img/deb.raw,format=raw,if=virtio,discard=unmap"])
        #expect(!args.contains("-nic") && !args.contains("-smbios") && !args.contains("-tpmdev"))
    }

    @Test func kvmAddsHostCPU() {
        var spec = directSpec()
        spec.accelerator = .kvm
        let args = QEMUCommand.arguments(for: spec)
        #expect(values(args, "-machine") == ["type=q35,accel=kvm"])
        #expect(values(args, "-cpu") == ["host"])
    }

    @Test func memoryRoundsUpToMiB() {
        #expect(QEMUCommand.memoryArgument(2 << 30) == "2048M")
        #expect(QEMUCommand.memoryArgument((64 << 20) + 1) == "65M")
    }

    @Test func kernelArgumentsAppendedAndUserRootWins() {
        var spec = directSpec()
        spec.kernelArguments = ["systemd.unit=poweroff.target", "quiet"]
        #expect(values(QEMUCommand.arguments(for: spec), "-append") ==
                ["root=PARTUUID=5ca1ab1e-0000-4000-8000-00000000a001 rw console=ttyS0 systemd.unit=poweroff.target quiet"])
        spec.kernelArguments = ["root=/dev/vda2"]
        #expect(values(QEMUCommand.arguments(for: spec), "-append") == ["rw console=ttyS0 root=/dev/vda2"])
    }

    @Test func noInitrd() {
        var spec = directSpec()
        spec.boot = .direct(kernel: "/k", initrd: nil, rootPartitionUUID: Self.root)
        #expect(!QEMUCommand.arguments(for: spec).contains("-initrd"))
    }

    @Test func ephemeralOverlayExtraDrivesAndDiscard() {
        var spec = directSpec()
        spec.root = VMSpec.Drive(path: "/tmp/x/overlay.qcow2", format: .qcow2, discard: false)
        spec.extraDrives = [VMSpec.Drive(path: "/data/a,b.qcow2", format: .qcow2, discard: false)]
        #expect(values(QEMUCommand.arguments(for: spec), "-drive") == [
            "file=/tmp/x/overlay.qcow2,format=qcow2,if=virtio,discard=ignore",
            "file=/data/a,,b.qcow2,format=qcow2,if=virtio,discard=ignore",
        ])
    }

    @Test func firmwareBootWithSecureBootAndSMM() {
        var spec = directSpec()
        spec.boot = .firmware(VMSpec.FirmwareFiles(code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", variables: "/tmp/x/efivars.fd",
                                                   secureBoot: true, requiresSMM: true))
        spec.kernelArguments = ["systemd.unit=rescue.target", "a,b"]
        let args = QEMUCommand.arguments(for: spec)
        #expect(values(args, "-machine") == ["type=q35,accel=tcg,smm=on"])
        #expect(values(args, "-drive").prefix(2) == [
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "if=pflash,format=raw,unit=1,file=/tmp/x/efivars.fd",
        ])
        #expect(values(args, "-global") == ["driver=cfi.pflash01,property=secure,value=on"])
        #expect(!args.contains("-kernel") && !args.contains("-append"))
        #expect(values(args, "-smbios") == ["type=11,value=io.systemd.stub.kernel-cmdline-extra=systemd.unit=rescue.target a,,b"])
    }

    @Test func firmwareWithoutSMM() {
        var spec = directSpec()
        spec.boot = .firmware(VMSpec.FirmwareFiles(code: "/c.fd", variables: nil, secureBoot: false, requiresSMM: false))
        let args = QEMUCommand.arguments(for: spec)
        #expect(values(args, "-machine") == ["type=q35,accel=tcg"])
        #expect(values(args, "-drive").first == "if=pflash,format=raw,unit=0,readonly=on,file=/c.fd")
        #expect(!args.contains("-global"))
    }

    @Test func networks() {
        var spec = directSpec()
        spec.network = .user
        #expect(values(QEMUCommand.arguments(for: spec), "-nic") == ["user,model=virtio-net-pci"])
        spec.network = .tap(interface: "vt-deb")
        #expect(values(QEMUCommand.arguments(for: spec), "-nic") == ["tap,ifname=vt-deb,script=no,downscript=no,model=virtio-net-pci"])
    }

    @Test func vsockAndTPM() {
        var spec = directSpec()
        spec.vsockCID = 4242
        spec.tpm = VMSpec.TPM(socketPath: "/tmp/x/tpm.sock")
        let args = QEMUCommand.arguments(for: spec)
        #expect(values(args, "-device").contains("vhost-vsock-pci,guest-cid=4242"))
        #expect(values(args, "-chardev").contains("socket,id=chrtpm,path=/tmp/x/tpm.sock"))
        #expect(values(args, "-tpmdev") == ["emulator,id=tpm0,chardev=chrtpm"])
        #expect(values(args, "-device").contains("tpm-tis,tpmdev=tpm0"))
    }

    @Test func credentialsTextAndBinaryWithCommaEscaping() {
        var spec = directSpec()
        spec.credentials = [VMSpec.Credential(id: "imagectl.test", value: Array("hello,world".utf8)),
                            VMSpec.Credential(id: "bin", value: [0, 1, 2, 0xff])]
        #expect(values(QEMUCommand.arguments(for: spec), "-smbios") == [
            "type=11,value=io.systemd.credential:imagectl.test=hello,,world",
            "type=11,value=io.systemd.credential.binary:bin=AAEC/w==",
        ])
    }

    @Test func consoleModes() {
        var spec = directSpec()
        spec.console = .interactive
        #expect(values(QEMUCommand.arguments(for: spec), "-chardev") == ["stdio,id=console,signal=off"])
        #expect(values(QEMUCommand.arguments(for: spec), "-serial") == ["chardev:console"])
        spec.console = .readOnly
        #expect(values(QEMUCommand.arguments(for: spec), "-serial") == ["chardev:console"])
        spec.console = .native
        #expect(values(QEMUCommand.arguments(for: spec), "-serial") == ["mon:stdio"])
        spec.console = .headless
        #expect(values(QEMUCommand.arguments(for: spec), "-serial") == ["null"])
        #expect(!QEMUCommand.arguments(for: spec).contains("-chardev"))
    }

    @Test func nameCommasEscaped() {
        var spec = directSpec()
        spec.name = "a,b"
        #expect(values(QEMUCommand.arguments(for: spec), "-name") == ["guest=a,,b"])
    }

    @Test func shellQuoting() {
        #expect(QEMUCommand.shellQuoted(["qemu", "-append", "root=x rw", "it's"]) == "qemu -append 'root=x rw' 'it'\\''s'")
        #expect(QEMUCommand.shellQuote("") == "''")
    }
}

/// The runner's own QMP connection on the command line, and what qemu's end means for the
/// user (the SHUTDOWN reason, a signal's stop), without qemu.
@Suite struct VMLifecycleTests {
    @Test func runnerMonitorPausesQemuUntilConnected() {
        var spec = VMCommandTests().directSpec()
        #expect(!QEMUCommand.arguments(for: spec).contains("-S"))
        spec.qmpSocket = "/run/imagectl/qmp/42.sock"
        spec.monitorSocket = "/var/tmp/imagectl-vm-x,y/monitor.sock"
        let args = QEMUCommand.arguments(for: spec)
        #expect(VMCommandTests().values(args, "-qmp") == ["unix:/run/imagectl/qmp/42.sock,server=on,wait=off"])
        // qemu connects to imagectl's socket as a client (no server=on) and waits for `cont`.
        #expect(VMCommandTests().values(args, "-chardev").contains("socket,id=imagectl-monitor,path=/var/tmp/imagectl-vm-x,,y/monitor.sock"))
        #expect(VMCommandTests().values(args, "-mon") == ["chardev=imagectl-monitor,mode=control"])
        #expect(args.contains("-S"))
    }

    typealias Process = QEMUProcess.Outcome

    @Test func endingFollowsTheShutdownReason() {
        func ending(_ cause: QMPShutdownCause?) -> VirtualMachine.Outcome {
            VirtualMachine.outcome(Process(termination: .exited(0), shutdown: cause), escaped: false)
        }
        #expect(ending(.guestPoweroff) == VirtualMachine.Outcome(exitStatus: 0, failure: nil, ending: .poweredOff, stop: nil))
        #expect(ending(.guestReset).exitStatus == 133 && ending(.guestReset).ending == .rebooted(byHost: false))
        #expect(ending(.hostReset).exitStatus == 133 && ending(.hostReset).ending == .rebooted(byHost: true))
        #expect(ending(.hostQuit).exitStatus == 137 && ending(.hostQuit).ending == .terminated(.quit))
        #expect(ending(.hostSignal).exitStatus == 137 && ending(.hostSignal).ending == .terminated(.qemuSignal))
        #expect(ending(.hostUI).ending == .terminated(.qemuConsole))
        #expect(ending(.guestPanic).exitStatus == 1)
        // Nothing said the guest powered off: not reported as one.
        #expect(ending(nil).ending == .unexplained(nil) && ending(nil).exitStatus == 0)
        #expect(ending(.other("host-error")).ending == .unexplained("host-error"))
        // qemu failed: its status, no ending.
        let failed = VirtualMachine.outcome(Process(termination: .exited(1)), escaped: false)
        #expect(failed.exitStatus == 1 && failed.ending == nil && failed.failure != nil)
        let escaped = VirtualMachine.outcome(Process(termination: .signaled(SIGKILL)), escaped: true)
        #expect(escaped.exitStatus == 137 && escaped.ending == .terminated(.escape) && escaped.failure == nil)
    }

    @Test func aSignalsStopIsReported() {
        // SIGTERM, the power button, and the guest powered off: 0, as a power off.
        let clean = VirtualMachine.outcome(Process(termination: .exited(0), shutdown: .guestPoweroff, receivedSignal: SIGTERM,
                                                   stop: .poweroffRequested), escaped: false)
        #expect(clean == VirtualMachine.Outcome(exitStatus: 0, failure: nil, ending: .poweredOff, stop: .poweroffRequested(signal: SIGTERM)))
        #expect(clean.stop?.quit == false)
        // The timeout passed: quit.
        let late = VirtualMachine.outcome(Process(termination: .exited(0), shutdown: .hostQuit, receivedSignal: SIGINT,
                                                  stop: .quitAfterTimeout(90)), escaped: false)
        #expect(late.exitStatus == 137 && late.stop == .quitAfterTimeout(signal: SIGINT, seconds: 90) && late.stop?.quit == true)
        // qemu did not answer the quit and was killed: still the stop that was asked for.
        let killed = VirtualMachine.outcome(Process(termination: .signaled(SIGKILL), receivedSignal: SIGTERM,
                                                    stop: .quitOnSecondSignal), escaped: false)
        #expect(killed.exitStatus == 137 && killed.failure == nil && killed.ending == .terminated(.quit))
        // A SIGKILL nobody asked for is a failure.
        let murdered = VirtualMachine.outcome(Process(termination: .signaled(SIGKILL)), escaped: false)
        #expect(murdered.failure != nil && murdered.exitStatus == 137)
    }
}
