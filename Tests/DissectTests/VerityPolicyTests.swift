import Dissect
import Testing

/// systemd image-policy syntax and the protection check.
@Suite struct VerityPolicyTests {
    @Test("accepted syntax", arguments: [
        "root=verity+signed:usr=unprotected:=absent", "*", "-", "~", "", "root=signed", "=open",
        "root=verity+read-only-on:home=ignore", "usr=verity:root=encrypted+unprotected:swap=absent+unused",
        "root-verity=unprotected", " root = signed : = absent ",
    ])
    func parses(_ text: String) throws {
        _ = try ImagePolicy.parse(text)
    }

    @Test("rejected syntax names the problem", arguments: [
        ("root", "no '='"),
        ("rot=verity", "unknown partition designator"),
        ("root=verity+sigend", "unknown flag"),
        ("root=verity:root=signed", "more than one rule"),
        ("=open:=absent", "more than once"),
        ("root=verity++signed", "unknown flag"),
    ])
    func rejects(_ text: String, _ expected: String) {
        let error = #expect(throws: ImagePolicy.Error.self) { try ImagePolicy.parse(text) }
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }

    @Test func checks() throws {
        let policy = try ImagePolicy.parse("root=verity+signed:usr=unprotected:=absent")
        #expect(try policy.check(designator: "root", protection: .signed) == .signed)
        #expect(try policy.check(designator: "root", protection: .verity) == .verity)
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .unprotected) }
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .absent) }
        #expect(try policy.check(designator: "usr", protection: .unprotected) == .unprotected)
        // usr with verity may be used unprotected (the verity data is ignored), as systemd does.
        #expect(try policy.check(designator: "usr", protection: .verity) == .unprotected)
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "usr", protection: .encrypted) }
        // Default rule: everything else must be absent.
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "home", protection: .unprotected) }
        #expect(try policy.check(designator: "home", protection: .absent) == .absent)
        // root-verity inherits from root: needed when root is verity, may not be absent.
        #expect(try policy.check(designator: "root-verity", protection: .unprotected) == .unprotected)
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root-verity", protection: .absent) }
    }

    @Test func signedOnly() throws {
        let policy = try ImagePolicy.parse("root=signed")
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .verity) }
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .unprotected) }
        #expect(try policy.check(designator: "root", protection: .signed) == .signed)
        // Unlisted partitions get the implicit default "ignore": may exist (unused) or be absent.
        #expect(try policy.check(designator: "home", protection: .unprotected) == .unused)
        #expect(try policy.check(designator: "srv", protection: .absent) == .absent)
    }

    @Test func shorthands() throws {
        let all = try ImagePolicy.parse("*")
        #expect(try all.check(designator: "root", protection: .signed) == .signed)
        #expect(try all.check(designator: "home", protection: .encrypted) == .encrypted)
        let ignore = try ImagePolicy.parse("-")
        #expect(try ignore.check(designator: "root", protection: .signed) == .unused)
        let deny = try ImagePolicy.parse("~")
        #expect(throws: ImagePolicy.Error.self) { try deny.check(designator: "root", protection: .signed) }
        #expect(try deny.check(designator: "root", protection: .absent) == .absent)
    }

    @Test func partitionFlags() throws {
        let policy = try ImagePolicy.parse("root=verity+read-only-on+growfs-off:=unprotected")
        #expect(try policy.check(designator: "root", protection: .verity, readOnly: true, growfs: false) == .verity)
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .verity, readOnly: false) }
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "root", protection: .verity, growfs: true) }
        // Only root and usr have verity: "verity" for home is masked off.
        let home = try ImagePolicy.parse("home=verity")
        #expect(throws: ImagePolicy.Error.self) { try home.check(designator: "home", protection: .unprotected) }
    }
}
