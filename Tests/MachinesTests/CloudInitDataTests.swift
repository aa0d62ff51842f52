import Foundation
import Machines
import Testing
import TestSupport

/// cloud-init's NoCloud files: what the user gives, the checks and the defaults.
struct CloudInitDataTests {
    let uuid = UUID(uuidString: "0f1e2d3c-4b5a-4697-8877-665544332211")!

    @Test func defaultsNameTheMachineAndPutTheKeyOnTheDefaultUser() throws {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc user@host"
        let data = try #require(try CloudInitData.load(directory: "defaults", userDataFile: nil, instanceID: uuid, hostname: "web1", sshPublicKey: key))
        #expect(String(decoding: data.metaData, as: UTF8.self) == "instance-id: 0f1e2d3c-4b5a-4697-8877-665544332211\nlocal-hostname: web1\n")
        #expect(String(decoding: data.userData, as: UTF8.self) == "#cloud-config\nssh_authorized_keys:\n  - \"\(key)\"\n")
        #expect(data.userDataIsDefault)
        #expect(data.files.map(\.name) == ["user-data", "meta-data"])
        #expect(try CloudInitData.load(directory: nil, userDataFile: nil, instanceID: uuid, hostname: "x", sshPublicKey: key) == nil)
    }

    @Test func directoryFilesWinOverTheDefaults() throws {
        let dir = try TemporaryDirectory(prefix: "imagectl-cloud-init")
        try "#!/bin/sh\necho hi\n".write(toFile: dir.appending("user-data"), atomically: true, encoding: .utf8)
        try "instance-id: mine\n".write(toFile: dir.appending("meta-data"), atomically: true, encoding: .utf8)
        try "version: 2\n".write(toFile: dir.appending("network-config"), atomically: true, encoding: .utf8)
        let data = try #require(try CloudInitData.load(directory: dir.path, userDataFile: nil, instanceID: uuid, hostname: "x", sshPublicKey: nil))
        #expect(String(decoding: data.userData, as: UTF8.self) == "#!/bin/sh\necho hi\n")
        #expect(String(decoding: data.metaData, as: UTF8.self) == "instance-id: mine\n")
        #expect(data.networkConfig.map { String(decoding: $0, as: UTF8.self) } == "version: 2\n")
        #expect(!data.userDataIsDefault)
    }

    @Test func badInputIsRefused() throws {
        let dir = try TemporaryDirectory(prefix: "imagectl-cloud-init")
        try "users: []\n".write(toFile: dir.appending("plain"), atomically: true, encoding: .utf8)
        try ("#cloud-config\n" + String(repeating: "x", count: 1 << 20)).write(toFile: dir.appending("big"), atomically: true, encoding: .utf8)
        #expect(throws: CloudInitData.Error.notUserData(path: dir.appending("plain"))) {
            try CloudInitData.load(directory: nil, userDataFile: dir.appending("plain"), instanceID: uuid, hostname: "x", sshPublicKey: nil)
        }
        #expect(throws: CloudInitData.Error.tooLarge(path: dir.appending("big"))) {
            try CloudInitData.load(directory: nil, userDataFile: dir.appending("big"), instanceID: uuid, hostname: "x", sshPublicKey: nil)
        }
        #expect(throws: CloudInitData.Error.missingDirectory(dir.appending("none"))) {
            try CloudInitData.load(directory: dir.appending("none"), userDataFile: nil, instanceID: uuid, hostname: "x", sshPublicKey: nil)
        }
        #expect(throws: CloudInitData.Error.bothSources) {
            try CloudInitData.load(directory: dir.path, userDataFile: dir.appending("plain"), instanceID: uuid, hostname: "x", sshPublicKey: nil)
        }
    }

    @Test func stableUUIDFollowsThePath() {
        let a = CloudInitData.stableUUID(for: "/var/lib/machines/a.raw")
        #expect(a == CloudInitData.stableUUID(for: "/var/lib/machines/a.raw"))
        #expect(a != CloudInitData.stableUUID(for: "/var/lib/machines/b.raw"))
        let text = a.uuidString.lowercased()
        #expect(Array(text)[14] == "4")
        #expect("89ab".contains(Array(text)[19]))
    }
}
