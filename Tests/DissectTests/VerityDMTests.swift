import Dissect
import Foundation
import Testing
import TestSupport

/// Kernel dm-verity through libcryptsetup. Where device-mapper exists the device is opened and
/// closed; where it does not (this machine) activation must fail with a clear message and leave
/// nothing behind.
@Suite struct VerityDMTests {
    @Test("activate opens dm-verity, or says clearly that device-mapper is missing")
    func activate() throws {
        try Privileged.require(.root, .tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-dm")
        let (target, root) = try VerityCase.all[0].make(in: dir)
        let hash = try #require(VerityHex.decode(root))
        let name = "imagectl-test-\(UUID().uuidString.prefix(8).lowercased())"
        let hasDeviceMapper = Privileged.has(.deviceMapper)
        // imagectl's own probe agrees with the test's.
        #expect(DMVerity.isAvailable == hasDeviceMapper)
        if hasDeviceMapper {
            let device = try DMVerity.activate(name: name, target: target, rootHash: hash, signature: nil)
            #expect(device == "/dev/mapper/\(name)")
            #expect(FileManager.default.fileExists(atPath: device))
            try DMVerity.deactivate(name: name)
            #expect(!FileManager.default.fileExists(atPath: device))
        } else {
            let error = #expect(throws: DMVerity.Error.self) {
                try DMVerity.activate(name: name, target: target, rootHash: hash, signature: nil)
            }
            #expect(error?.description == "device-mapper not available: the kernel has no device-mapper "
                    + "(/dev/mapper/control missing or not registered in /proc/misc)")
            #expect(!FileManager.default.fileExists(atPath: "/dev/mapper/\(name)"))
            #expect(throws: DMVerity.Error.self) { try DMVerity.deactivate(name: name) }
        }
    }

    @Test("a data area at an offset is refused with a hint, not silently misread")
    func dataOffset() throws {
        // Refused before device-mapper is asked for, so the same on every host.
        let error = #expect(throws: DMVerity.Error.self) {
            try DMVerity.activate(name: "imagectl-offset", target: VerityTarget(dataPath: "/dev/null", dataOffset: 4096, dataSize: 0,
                                                                                 hashPath: "/dev/null", hashSize: 0),
                                  rootHash: [0], signature: nil)
        }
        #expect(error?.description.contains("it is at byte 4096") == true)
        #expect(error?.description.contains("attach a loop device") == true)
    }

    @Test("libcryptsetup's messages do not reach stderr raw")
    func cryptsetupLogIsCaptured() throws {
        try Privileged.require(.tool("veritysetup"))
        let dir = try TemporaryDirectory(prefix: "verity-log")
        let junk = dir.appending("junk")
        try Data(repeating: 0x55, count: 8192).write(to: URL(fileURLWithPath: junk))
        let error = #expect(throws: CryptsetupError.self) { try CryptsetupVerity.readSuperblock(path: junk) }
        #expect(error?.call == "crypt_load(VERITY)")
    }
}
