import Foundation
import Testing
@testable import Runner

/// --private-users= / --private-users-ownership= values, nspawn's pick rules, and the on-disk
/// formats the chown shift rewrites (POSIX ACLs, file capabilities).
@Suite("run user namespace values")
struct UserNamespaceTests {
    @Test func modes() throws {
        #expect(try UserNamespaceSettings.parseMode("no") == .off)
        #expect(try UserNamespaceSettings.parseMode("false") == .off)
        #expect(try UserNamespaceSettings.parseMode("yes") == .fromRootOwner)
        // Numbers are bases, never booleans (nspawn): 0 is the "undo" range of the manual.
        #expect(try UserNamespaceSettings.parseMode("1") == .fixed(base: 1, size: 65536))
        #expect(try UserNamespaceSettings.parseMode("0") == .fixed(base: 0, size: 65536))
        #expect(try UserNamespaceSettings.parseMode("pick") == .pick)
        #expect(try UserNamespaceSettings.parseMode("identity") == .identity)
        #expect(try UserNamespaceSettings.parseMode("524288") == .fixed(base: 524288, size: 65536))
        #expect(try UserNamespaceSettings.parseMode("1000:10") == .fixed(base: 1000, size: 10))
        // The last ID may be 0xFFFFFFFE (0xFFFFFFFF is UID_INVALID).
        #expect(try UserNamespaceSettings.parseMode("4294901759:65536") == .fixed(base: 4294901759, size: 65536))
    }

    @Test(arguments: ["", "pik", "-1", "1:", ":5", "1:0", "4294967295", "4294901760:65536", "1:2:3", "0x10000", " 5", "99999999999"])
    func badModes(_ text: String) {
        #expect(throws: RunnerError.invalidOption(option: "--private-users", value: text)) {
            try UserNamespaceSettings.parseMode(text)
        }
    }

    @Test func ownership() throws {
        #expect(try UserNamespaceSettings.parseOwnership("chown") == .chown)
        #expect(try UserNamespaceSettings.parseOwnership("MAP") == .map)
        #expect(try UserNamespaceSettings.parseOwnership("auto") == .auto)
        #expect(try UserNamespaceSettings.parseOwnership("off") == .off)
        #expect(throws: RunnerError.invalidOption(option: "--private-users-ownership", value: "yes")) {
            try UserNamespaceSettings.parseOwnership("yes")
        }
        // nspawn's defaults: auto with pick, off otherwise; an explicit value wins.
        #expect(UserNamespaceSettings(mode: .pick).effectiveOwnership == .auto)
        #expect(UserNamespaceSettings(mode: .fromRootOwner).effectiveOwnership == .off)
        #expect(UserNamespaceSettings(mode: .fixed(base: 65536, size: 65536)).effectiveOwnership == .off)
        #expect(UserNamespaceSettings(mode: .pick, ownership: .chown).effectiveOwnership == .chown)
    }

    @Test func bindIdmapOption() throws {
        #expect(try ExtraMount.parseBind("/srv:/mnt:idmap", readOnly: false)
                == .bind(source: MountPath(path: "/srv", inRoot: false, idmap: true), target: "/mnt", readOnly: false, recursive: true))
        #expect(try ExtraMount.parseBind("/srv:/mnt:norbind,idmap,noidmap", readOnly: true)
                == .bind(source: MountPath(path: "/srv", inRoot: false, idmap: false), target: "/mnt", readOnly: true, recursive: false))
        // Neither given: left to the user namespace (ID-mapped in imagectl's default one).
        #expect(try ExtraMount.parseBind("/srv:/mnt", readOnly: false)
                == .bind(source: MountPath(path: "/srv", inRoot: false, idmap: nil), target: "/mnt", readOnly: false, recursive: true))
        // A temporary (empty) source has no IDs to map.
        #expect(throws: MountSettings.Error.self) { try ExtraMount.parseBind(":/mnt:idmap", readOnly: false) }
    }

    @Test func pickCandidates() {
        let range = UserNamespaceSettings.pickRange
        // A tree shifted before keeps its base: it comes first.
        let own = Array(UserNamespaceSettings.pickCandidates(machine: "m", rootOwner: (0x1234_0000, 0x1234_0000)).prefix(3))
        #expect(own.first == 0x1234_0000)
        #expect(own.dropFirst().allSatisfy { $0 != 0x1234_0000 })
        // An unshifted tree (0) or one outside the pick range: the name's hash decides, the same
        // every time, each candidate 64K-aligned inside nspawn's range.
        let a = Array(UserNamespaceSettings.pickCandidates(machine: "alpha", rootOwner: (0, 0)).prefix(5))
        let b = Array(UserNamespaceSettings.pickCandidates(machine: "alpha", rootOwner: (1000, 1000)).prefix(5))
        let c = Array(UserNamespaceSettings.pickCandidates(machine: "beta", rootOwner: (0, 0)).prefix(5))
        #expect(a == b)
        #expect(a != c)
        #expect(a.allSatisfy { $0 % 65536 == 0 && range.contains($0) })
        // Mismatched UID/GID bases are not a candidate.
        #expect(UserNamespaceSettings.pickCandidates(machine: "alpha", rootOwner: (0x1234_0000, 0x2000_0000)).first(where: { _ in true }) == a.first)
        // Every block of the range is tried once.
        let all = Array(UserNamespaceSettings.pickCandidates(machine: "alpha", rootOwner: nil))
        #expect(all.count == Int((range.upperBound - range.lowerBound) / 65536 + 1))
        #expect(Set(all).count == all.count)
    }

    @Test func hostIDs() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbig:x:1114112:1114112::/:/bin/false\nbad line\n"
        let ids = UserNamespaceSettings.numericIDs(passwd)
        #expect(ids == [0, 1114112])
        #expect(!UserNamespaceSettings.isFree(base: 0x0011_0000, size: 65536, taken: ids))
        #expect(UserNamespaceSettings.isFree(base: 0x0012_0000, size: 65536, taken: ids))
        #expect(!UserNamespaceSettings.isFree(base: 0x0010_0001, size: 65536, taken: ids))
    }

    @Test func shift() {
        #expect(UserNamespaceSettings.shifted(0, base: 0x0008_0000) == 0x0008_0000)
        #expect(UserNamespaceSettings.shifted(1000, base: 0x0008_0000) == 0x0008_03E8)
        // From one base to another, and back to 0 (nspawn's "undo").
        #expect(UserNamespaceSettings.shifted(0x0008_03E8, base: 0x0009_0000) == 0x0009_03E8)
        #expect(UserNamespaceSettings.shifted(0x0009_03E8, base: 0) == 1000)
    }

    @Test func aclEntriesShiftOnlyNamedUsersAndGroups() {
        func entry(_ tag: UInt16, _ perm: UInt16, _ id: UInt32) -> [UInt8] {
            [UInt8(tag & 0xFF), UInt8(tag >> 8), UInt8(perm & 0xFF), UInt8(perm >> 8),
             UInt8(id & 0xFF), UInt8(id >> 8 & 0xFF), UInt8(id >> 16 & 0xFF), UInt8(id >> 24)]
        }
        let header: [UInt8] = [2, 0, 0, 0]
        let acl = header + entry(1, 7, 0xFFFF_FFFF) + entry(2, 7, 1000) + entry(4, 5, 0xFFFF_FFFF) + entry(8, 5, 100)
            + entry(0x10, 7, 0xFFFF_FFFF) + entry(0x20, 5, 0xFFFF_FFFF)
        let shifted = PosixACL.shifted(acl) { UserNamespaceSettings.shifted($0, base: 0x0008_0000) }
        let expected = header + entry(1, 7, 0xFFFF_FFFF) + entry(2, 7, 0x0008_03E8) + entry(4, 5, 0xFFFF_FFFF) + entry(8, 5, 0x0008_0064)
            + entry(0x10, 7, 0xFFFF_FFFF) + entry(0x20, 5, 0xFFFF_FFFF)
        #expect(shifted == expected)
        // Not version 2, or a cut entry: left alone.
        #expect(PosixACL.shifted([1, 0, 0, 0] + entry(2, 7, 1), map: { $0 + 1 }) == nil)
        #expect(PosixACL.shifted(header + [1, 2, 3], map: { $0 + 1 }) == nil)
    }

    @Test func fileCapabilitiesBecomeVersion3WithTheBaseAsRoot() {
        // cap_net_raw+ep as revision 2: magic 0x02000001 (effective), permitted bit 13.
        let v2: [UInt8] = [0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let v3 = FileCapability.rebased(v2, rootID: 0x0008_0000)
        #expect(v3 == [0x01, 0, 0, 0x03, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x08, 0x00])
        // A revision 3 value gets the new root ID.
        #expect(FileCapability.rebased(v3 ?? [], rootID: 0x0009_0000)?.suffix(4) == [0x00, 0x00, 0x09, 0x00])
        // Revision 1 or garbage: nothing to write.
        #expect(FileCapability.rebased([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], rootID: 1) == nil)
        #expect(FileCapability.rebased([UInt8](repeating: 0xFF, count: 20), rootID: 1) == nil)
    }
}
