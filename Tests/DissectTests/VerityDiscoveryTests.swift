import Dissect
import Foundation
import LinuxSystem
import Testing
import TestSupport

/// Root hash discovery in FORMATS.md §2 order, each value with where it was found.
@Suite struct VerityDiscoveryTests {
    static let hashA = String(repeating: "a1", count: 32)
    static let hashB = String(repeating: "b2", count: 32)

    @Test func sidecarNames() {
        #expect(VerityDiscovery.sidecarPath(imagePath: "/x/foo.raw", suffix: ".roothash") == "/x/foo.roothash")
        #expect(VerityDiscovery.sidecarPath(imagePath: "/x/foo.img", suffix: ".verity") == "/x/foo.img.verity")
    }

    @Test("sidecars are found and named")
    func sidecars() throws {
        let dir = try TemporaryDirectory(prefix: "verity-disc")
        let image = dir.appending("os.raw")
        try Data([0]).write(to: URL(fileURLWithPath: image))
        try (Self.hashA + "\n").write(toFile: dir.appending("os.roothash"), atomically: true, encoding: .utf8)
        try Data([0x30, 1, 2]).write(to: URL(fileURLWithPath: dir.appending("os.roothash.p7s")))
        try Data([1]).write(to: URL(fileURLWithPath: dir.appending("os.verity")))
        try Self.hashB.write(toFile: dir.appending("os.usrhash"), atomically: true, encoding: .utf8)
        let settings = try VerityDiscovery.discover(imagePath: image, isBlockDevice: false, explicit: ExplicitVerityOptions())
        #expect(settings.rootHash.map { VerityHex.encode($0) } == Self.hashA)
        #expect(settings.rootHashSource == "sidecar \(dir.appending("os.roothash"))")
        #expect(settings.rootHashSignature == [0x30, 1, 2])
        #expect(settings.signatureSource == "sidecar \(dir.appending("os.roothash.p7s"))")
        #expect(settings.verityDataPath == dir.appending("os.verity"))
        #expect(settings.usrHash.map { VerityHex.encode($0) } == Self.hashB)

        // Block devices skip sidecars.
        let device = try VerityDiscovery.discover(imagePath: image, isBlockDevice: true, explicit: ExplicitVerityOptions())
        #expect(device.rootHash == nil && device.verityDataPath == nil)
    }

    @Test("an explicit option wins over the sidecar; the xattr over the sidecar")
    func precedence() throws {
        let dir = try TemporaryDirectory(prefix: "verity-prec")
        let image = dir.appending("os.raw")
        try Data([0]).write(to: URL(fileURLWithPath: image))
        try Self.hashA.write(toFile: dir.appending("os.roothash"), atomically: true, encoding: .utf8)
        let explicit = try VerityDiscovery.discover(imagePath: image, isBlockDevice: false,
                                                    explicit: ExplicitVerityOptions(rootHash: Self.hashB))
        #expect(explicit.rootHash.map { VerityHex.encode($0) } == Self.hashB)
        #expect(explicit.rootHashSource == "option")

        do {
            try Xattr.set(image, name: "user.verity.roothash", string: Self.hashB)
        } catch {
            try Privileged.require(.tool("setfattr"))  // filesystem without user xattrs: skip
            throw error
        }
        let fromXattr = try VerityDiscovery.discover(imagePath: image, isBlockDevice: false, explicit: ExplicitVerityOptions())
        #expect(fromXattr.rootHash.map { VerityHex.encode($0) } == Self.hashB)
        #expect(fromXattr.rootHashSource == "xattr user.verity.roothash")
    }

    @Test("bad sidecar contents are errors naming the file")
    func badSidecar() throws {
        let dir = try TemporaryDirectory(prefix: "verity-bad")
        let image = dir.appending("os.raw")
        try Data([0]).write(to: URL(fileURLWithPath: image))
        try "not hex".write(toFile: dir.appending("os.roothash"), atomically: true, encoding: .utf8)
        let error = #expect(throws: VerityDiscovery.Error.self) {
            try VerityDiscovery.discover(imagePath: image, isBlockDevice: false, explicit: ExplicitVerityOptions())
        }
        #expect(error?.description.contains("os.roothash") == true)
        #expect(throws: VerityDiscovery.Error.self) {
            try VerityDiscovery.discover(imagePath: image, isBlockDevice: false, explicit: ExplicitVerityOptions(rootHash: "abcd"))
        }
    }

    @Test("explicit signature forms: base64 and a path")
    func explicitSignature() throws {
        let dir = try TemporaryDirectory(prefix: "verity-sigopt")
        let image = dir.appending("os.raw")
        try Data([0]).write(to: URL(fileURLWithPath: image))
        let b64 = try VerityDiscovery.discover(imagePath: image, isBlockDevice: false,
                                               explicit: ExplicitVerityOptions(rootHash: Self.hashA, rootHashSignature: "base64:MAEC"))
        #expect(b64.rootHashSignature == [0x30, 1, 2])
        try Data([0x30, 9]).write(to: URL(fileURLWithPath: dir.appending("sig")))
        let file = try VerityDiscovery.discover(imagePath: image, isBlockDevice: false,
                                                explicit: ExplicitVerityOptions(rootHash: Self.hashA, rootHashSignature: dir.appending("sig")))
        #expect(file.rootHashSignature == [0x30, 9])
        #expect(throws: VerityDiscovery.Error.self) {
            try VerityDiscovery.discover(imagePath: image, isBlockDevice: false,
                                         explicit: ExplicitVerityOptions(rootHash: Self.hashA, rootHashSignature: dir.appending("missing")))
        }
    }

    @Test("the signature partition fills in the hash, and may not contradict a given one")
    func mergeSignaturePartition() throws {
        let json = VeritySignatureJSON(rootHash: try #require(VerityHex.decode(Self.hashA)), signature: [0x30, 0],
                                       certificateFingerprint: [UInt8](repeating: 1, count: 32))
        var empty = VeritySettings()
        try VerityDiscovery.merge(signaturePartition: json, into: &empty, designator: "root")
        #expect(empty.rootHash.map { VerityHex.encode($0) } == Self.hashA)
        #expect(empty.rootHashSource == "signature partition root-verity-sig")
        #expect(empty.rootHashSignature == [0x30, 0])
        #expect(empty.rootHashCertificateFingerprint == [UInt8](repeating: 1, count: 32))

        var same = VeritySettings()
        same.rootHash = VerityHex.decode(Self.hashA)
        same.rootHashSource = "option"
        try VerityDiscovery.merge(signaturePartition: json, into: &same, designator: "root")
        #expect(same.rootHashSource == "option")
        #expect(same.rootHashSignature == [0x30, 0])

        var other = VeritySettings()
        other.rootHash = VerityHex.decode(Self.hashB)
        other.rootHashSource = "option"
        let error = #expect(throws: VerityDiscovery.Error.self) {
            try VerityDiscovery.merge(signaturePartition: json, into: &other, designator: "root")
        }
        guard case .rootHashConflict? = error else {
            Issue.record("expected rootHashConflict, got \(String(describing: error))")
            return
        }

        var usr = VeritySettings()
        try VerityDiscovery.merge(signaturePartition: json, into: &usr, designator: "usr")
        #expect(usr.usrHash != nil && usr.rootHash == nil)
        #expect(usr.usrHashSource == "signature partition usr-verity-sig")
    }
}
