import Dissect
import Testing

/// What a directory tree can satisfy: its root is an unprotected partition, everything else is
/// absent; verity options cannot apply to it. The runners and verbs all ask ImageAdmission.
@Suite struct ImageAdmissionTests {
    static let tree = "/var/lib/machines/tree"

    @Test("a policy demanding verity, signed or encryption of root refuses a directory", arguments: [
        "root=verity+signed", "root=verity", "root=signed", "root=encrypted", "root=absent", "=absent",
    ])
    func refusesProtectionDemands(_ text: String) throws {
        let error = #expect(throws: ImageAdmission.Error.self) {
            try ImageAdmission.admitDirectory(Self.tree, policy: try ImagePolicy.parse(text), verity: ExplicitVerityOptions())
        }
        #expect(error?.description.contains("root partition") == true, "\(String(describing: error))")
        #expect(error?.description.contains("directory tree") == true)
    }

    @Test("a usr partition the policy requires cannot be found in a tree")
    func refusesRequiredUsr() throws {
        #expect(throws: ImageAdmission.Error.self) {
            try ImageAdmission.admitDirectory(Self.tree, policy: try ImagePolicy.parse("usr=verity"), verity: ExplicitVerityOptions())
        }
    }

    @Test("a policy leaving the root unused has nothing to run")
    func refusesUnusedRoot() throws {
        for text in ["-", "root=unused", "root=ignore"] {
            let error = #expect(throws: ImageAdmission.Error.self) {
                try ImageAdmission.admitDirectory(Self.tree, policy: try ImagePolicy.parse(text), verity: ExplicitVerityOptions())
            }
            #expect(error?.description.contains("unused") == true, "\(text): \(String(describing: error))")
        }
    }

    @Test("policies a tree meets", arguments: [
        "*", "root=unprotected", "root=unprotected:=absent", "root=open", "root=unprotected+verity:usr=absent+unused",
        "root=verity+unprotected:home=ignore", ImageAdmission.containerDefaultPolicyText,
    ])
    func accepts(_ text: String) throws {
        try ImageAdmission.admitDirectory(Self.tree, policy: try ImagePolicy.parse(text), verity: ExplicitVerityOptions())
    }

    @Test("no policy at all: a tree is fine")
    func noPolicy() throws {
        try ImageAdmission.admitDirectory(Self.tree, policy: nil, verity: ExplicitVerityOptions())
    }

    @Test("a root hash, usr hash, signature or hash tree for a directory is refused, naming the option")
    func refusesVerityOptions() throws {
        let cases: [(ExplicitVerityOptions, String)] = [
            (ExplicitVerityOptions(rootHash: String(repeating: "ab", count: 32)), "--root-hash"),
            (ExplicitVerityOptions(usrHash: String(repeating: "ab", count: 32)), "--usr-hash"),
            (ExplicitVerityOptions(rootHashSignature: "base64:AAAA"), "--root-hash-sig"),
            (ExplicitVerityOptions(verityData: "/x.verity"), "--verity-data"),
        ]
        for (options, name) in cases {
            let error = #expect(throws: ImageAdmission.Error.self) {
                try ImageAdmission.admitDirectory(Self.tree, policy: nil, verity: options)
            }
            #expect(error?.description.contains(name) == true, "\(String(describing: error))")
            #expect(error?.description.contains("directory tree") == true)
        }
    }

    @Test("nspawn's default policy allows verity and signed roots and ignores swap")
    func containerDefault() throws {
        let policy = ImageAdmission.containerDefault
        #expect(try policy.check(designator: "root", protection: .verity) == .verity)
        #expect(try policy.check(designator: "root", protection: .signed) == .signed)
        #expect(try policy.check(designator: "usr", protection: .verity) == .verity)
        #expect(try policy.check(designator: "swap", protection: .unprotected) == .unused)
        #expect(throws: ImagePolicy.Error.self) { try policy.check(designator: "esp", protection: .encrypted) }
    }
}
