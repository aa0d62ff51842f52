import Foundation
import Testing
import TestSupport
@testable import VMRunner

/// Option values, the KVM decision and firmware descriptors.
@Suite struct VMOptionsTests {
    @Test func sizes() throws {
        #expect(try VMOptions.parseSize("2G", option: "--ram") == 2 << 30)
        #expect(try VMOptions.parseSize("512m", option: "--ram") == 512 << 20)
        #expect(try VMOptions.parseSize("1.5G", option: "--ram") == 3 << 29)
        #expect(try VMOptions.parseSize("1048576", option: "--ram") == 1 << 20)
        for bad in ["", "G", "2X", "-1G", "lots", "0"] {
            #expect(throws: VMError.invalidSize(option: "--ram", value: bad)) { try VMOptions.parseSize(bad, option: "--ram") }
        }
    }

    @Test func booleansAndTristates() throws {
        #expect(try VMOptions.parseBoolean("yes", option: "--x") == true)
        #expect(try VMOptions.parseBoolean("off", option: "--x") == false)
        #expect(try VMOptions.parseTristate("auto", option: "--kvm") == .auto)
        #expect(try VMOptions.parseTristate("1", option: "--kvm") == .yes)
        #expect(throws: VMError.self) { try VMOptions.parseTristate("maybe", option: "--kvm") }
    }

    @Test func kvmDecision() throws {
        let pvm = VMOptions.KVMHost(unusableReason: nil, nestedPVM: true)
        let good = VMOptions.KVMHost(unusableReason: nil, nestedPVM: false)
        let none = VMOptions.KVMHost(unusableReason: "/dev/kvm does not exist", nestedPVM: false)
        let auto = try VMOptions.chooseAccelerator(.auto, host: pvm)
        #expect(auto.0 == .tcg)
        #expect(auto.warning?.contains("nested PVM") == true)
        #expect(try VMOptions.chooseAccelerator(.auto, host: good).0 == .kvm)
        #expect(try VMOptions.chooseAccelerator(.auto, host: none).0 == .tcg)
        #expect(try VMOptions.chooseAccelerator(.no, host: good).0 == .tcg)
        #expect(throws: VMError.self) { try VMOptions.chooseAccelerator(.yes, host: pvm) }
        #expect(throws: VMError.kvmUnavailable("/dev/kvm does not exist")) { try VMOptions.chooseAccelerator(.yes, host: none) }
        #expect(try VMOptions.chooseAccelerator(.yes, host: good).0 == .kvm)
    }

    @Test func probeSeesThisMachinesPVM() {
        // The probe itself, with paths that do and do not exist.
        let dir = FileManager.default.temporaryDirectory.path
        let host = VMOptions.KVMHost.probe(device: "/nonexistent/kvm", pvmModule: dir)
        #expect(host.unusableReason == "/nonexistent/kvm does not exist")
        #expect(host.nestedPVM)
        #expect(!VMOptions.KVMHost.probe(pvmModule: "/nonexistent").nestedPVM)
    }

    @Test func setCredentialUnescapes() throws {
        let c = try VMOptions.parseSetCredential(#"my.id:a\nb\x00c\\d:e"#)
        #expect(c.id == "my.id")
        #expect(c.value == Array("a\nb".utf8) + [0] + Array("c\\d:e".utf8))
        #expect(throws: VMError.self) { try VMOptions.parseSetCredential("novalue") }
        #expect(throws: VMError.self) { try VMOptions.parseSetCredential("a/b:x") }
        #expect(throws: VMError.self) { try VMOptions.parseSetCredential(":x") }
        #expect(throws: VMError.self) { try VMOptions.parseSetCredential(#"id:bad\q"#) }
    }

    @Test func loadCredentialReadsFile() throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/secret"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        let c = try VMOptions.parseLoadCredential("k:" + path)
        #expect(c == VMSpec.Credential(id: "k", value: [1, 2, 3]))
        #expect(throws: VMError.missingFile(option: "--load-credential", path: dir.path + "/none")) {
            try VMOptions.parseLoadCredential("k:" + dir.path + "/none")
        }
    }

    @Test func cidsColoursCPUs() throws {
        #expect(try VMOptions.parseCID("3") == 3)
        #expect(try VMOptions.parseCID("0x10") == 16)
        for bad in ["2", "4294967295", "x"] { #expect(throws: VMError.self) { try VMOptions.parseCID(bad) } }
        #expect(try VMOptions.parseBackground("48;2;0;0;80") == "48;2;0;0;80")
        #expect(throws: VMError.self) { try VMOptions.parseBackground("red") }
        #expect(try VMOptions.parseCPUs("4") == 4)
        #expect(throws: VMError.self) { try VMOptions.parseCPUs("0") }
    }

    @Test func formatDetection() throws {
        let dir = try TemporaryDirectory()
        try Data([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).write(to: URL(fileURLWithPath: dir.path + "/q"))
        try Data(repeating: 0, count: 512).write(to: URL(fileURLWithPath: dir.path + "/r"))
        #expect(VMOptions.detectFormat(path: dir.path + "/q") == .qcow2)
        #expect(VMOptions.detectFormat(path: dir.path + "/r") == .raw)
    }

    static func descriptor(features: [String], code: String = "/c.fd", interfaces: String = #"["uefi"]"#, machines: String = #"["pc-q35-*"]"#) -> Data {
        Data("""
            {"description": "d", "interface-types": \(interfaces),
             "mapping": {"device": "flash", "executable": {"filename": "\(code)", "format": "raw"},
                         "nvram-template": {"filename": "/v.fd", "format": "raw"}},
             "targets": [{"architecture": "x86_64", "machines": \(machines)}],
             "features": \(features)}
            """.utf8)
    }

    @Test func firmwareDescriptorParsingAndSelection() throws {
        let secure = try #require(try FirmwareDescriptor.parse(Self.descriptor(features: ["secure-boot", "requires-smm"], code: "/s.fd"), path: "a.json"))
        let plain = try #require(try FirmwareDescriptor.parse(Self.descriptor(features: ["acpi-s3"]), path: "b.json"))
        #expect(secure.secureBoot && secure.requiresSMM && secure.nvramTemplate == "/v.fd")
        #expect(!plain.secureBoot)
        #expect(FirmwareDescriptor.select([secure, plain], secureBoot: nil) == secure)
        #expect(FirmwareDescriptor.select([secure, plain], secureBoot: false) == plain)
        #expect(FirmwareDescriptor.select([plain], secureBoot: true) == nil)
        #expect(try FirmwareDescriptor.parse(Self.descriptor(features: [], interfaces: #"["bios"]"#), path: "c") == nil)
        #expect(try FirmwareDescriptor.parse(Self.descriptor(features: [], machines: #"["pc-i440fx-*"]"#), path: "c") == nil)
        #expect(throws: VMError.self) { try FirmwareDescriptor.parse(Data("{}".utf8), path: "bad.json") }
    }

    @Test func installedOVMFDescriptors() throws {
        try Privileged.require(.tool("qemu-system-x86_64"))
        let all = FirmwareDescriptor.discover()
        try #require(!all.isEmpty, "package ovmf installs descriptors in /usr/share/qemu/firmware")
        #expect(FirmwareDescriptor.select(all, secureBoot: true)?.secureBoot == true)
        #expect(FirmwareDescriptor.select(all, secureBoot: false)?.secureBoot == false)
        for d in all { #expect(FileManager.default.fileExists(atPath: d.code)) }
    }
}
