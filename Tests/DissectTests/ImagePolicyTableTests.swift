import Dissect
import Testing

/// systemd.image-policy(7), one test per row of its table: each flag, the aliases, the special
/// policies and the `=`/`:` forms.
@Suite struct ImagePolicyTableTests {
    func use(_ policy: String, _ designator: String, _ protection: PartitionProtection) throws -> PartitionProtection {
        try ImagePolicy.parse(policy).check(designator: designator, protection: protection)
    }

    func refused(_ policy: String, _ designator: String, _ protection: PartitionProtection) -> Bool {
        (try? use(policy, designator, protection)) == nil
    }

    @Test func unprotected() throws {
        #expect(try use("root=unprotected", "root", .unprotected) == .unprotected)
        // Verity data may be used without its verity ("verity+unprotected" is a downgrade, not a refusal).
        #expect(try use("root=unprotected", "root", .verity) == .unprotected)
        #expect(refused("root=unprotected", "root", .encrypted))
        #expect(refused("root=unprotected", "root", .absent))
    }

    @Test func verity() throws {
        #expect(try use("root=verity", "root", .verity) == .verity)
        #expect(try use("root=verity", "root", .signed) == .verity)
        #expect(refused("root=verity", "root", .unprotected))
        #expect(refused("root=verity", "root", .absent))
        // Only root and usr have verity.
        #expect(refused("home=verity", "home", .unprotected))
    }

    @Test func signed() throws {
        #expect(try use("usr=signed", "usr", .signed) == .signed)
        #expect(refused("usr=signed", "usr", .verity))
        #expect(refused("usr=signed", "usr", .unprotected))
    }

    @Test func encrypted() throws {
        #expect(try use("home=encrypted", "home", .encrypted) == .encrypted)
        #expect(refused("home=encrypted", "home", .unprotected))
    }

    @Test func absent() throws {
        #expect(try use("home=absent", "home", .absent) == .absent)
        #expect(refused("home=absent", "home", .unprotected))
    }

    @Test func unused() throws {
        #expect(try use("home=unused", "home", .unprotected) == .unused)
        #expect(try use("home=unused", "home", .encrypted) == .unused)
        #expect(refused("home=unused", "home", .absent))
    }

    @Test("open = unprotected+verity+signed+encrypted+unused+absent")
    func open() throws {
        for protection: PartitionProtection in [.unprotected, .verity, .signed, .encrypted, .absent] {
            #expect(try use("root=open", "root", protection) == protection)
        }
    }

    @Test("ignore = unused+absent")
    func ignore() throws {
        #expect(try use("srv=ignore", "srv", .unprotected) == .unused)
        #expect(try use("srv=ignore", "srv", .absent) == .absent)
        #expect(try use("root=ignore", "root", .signed) == .unused)
    }

    @Test("an empty identifier (=flags) is the default for every designator not named")
    func defaultRule() throws {
        #expect(refused("root=open:=absent", "home", .unprotected))
        #expect(try use("root=open:=absent", "home", .absent) == .absent)
        #expect(try use("=unprotected", "srv", .unprotected) == .unprotected)
        // Without "=..." the default is ignore.
        #expect(try use("root=open", "home", .unprotected) == .unused)
    }

    @Test("':' separates rules, '+' combines flags, whitespace around them is allowed")
    func colonAndPlusForms() throws {
        let policy = "root=verity+signed : usr=unprotected+absent :home=encrypted+unused"
        #expect(try use(policy, "root", .signed) == .signed)
        #expect(try use(policy, "usr", .absent) == .absent)
        #expect(try use(policy, "home", .unprotected) == .unused)
        #expect(refused(policy, "root", .unprotected))
    }

    @Test("'*' allows everything, '-' ignores everything, '~' requires everything absent")
    func specialPolicies() throws {
        #expect(try use("*", "root", .encrypted) == .encrypted)
        #expect(try use("-", "root", .unprotected) == .unused)
        #expect(try use("-", "root", .absent) == .absent)
        #expect(refused("~", "root", .unprotected))
        #expect(try use("~", "usr", .absent) == .absent)
    }

    @Test("verity and signature partitions follow their data partition")
    func verityPartitionsInherit() throws {
        #expect(try use("root=signed", "root-verity-sig", .unprotected) == .unprotected)
        #expect(refused("root=signed", "root-verity-sig", .absent))
        #expect(try use("root=verity", "root-verity-sig", .unprotected) == .unused)
    }
}
