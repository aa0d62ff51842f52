import Foundation
import Testing
@testable import Runner

@Suite("Runner values")
struct RunnerValueTests {
    @Test func capabilityNamesParse() throws {
        #expect(Capability(name: "CAP_SYS_ADMIN")?.number == 21)
        #expect(Capability(name: "sys_admin")?.number == 21)
        #expect(Capability(name: "CAP_NOPE") == nil)
        #expect(try Capability.parseList("CAP_NET_ADMIN,CAP_SYS_TIME").map(\.number).sorted() == [12, 25])
        #expect(throws: RunnerError.unknownCapability("CAP_BOGUS")) { try Capability.parseList("CAP_CHOWN,CAP_BOGUS") }
        #expect(try Capability.parseList("all") == Capability.all)
    }

    @Test func defaultBoundingSetIsNspawns() throws {
        // The 26 capabilities systemd-nspawn(1) lists for --capability=.
        #expect(Capability.nspawnDefault.count == 26)
        #expect(!Capability.nspawnDefault.contains(Capability(name: "SYS_MODULE")!))
        #expect(!Capability.nspawnDefault.contains(Capability(name: "NET_ADMIN")!))
        var c = ContainerConfiguration(directory: "/x")
        c.privateNetwork = true
        #expect(c.boundingSet.contains(Capability(name: "NET_ADMIN")!))
        c.dropCapabilities = [Capability(name: "SYS_ADMIN")!]
        c.addCapabilities = [Capability(name: "SYS_TIME")!]
        #expect(!c.boundingSet.contains(Capability(name: "SYS_ADMIN")!))
        #expect(c.boundingSet.contains(Capability(name: "SYS_TIME")!))
        #expect(Capability.mask([Capability(name: "CHOWN")!, Capability(name: "KILL")!]) == 0b100001)
    }

    @Test func passwdAndGroups() {
        let passwd = UserDatabase.parsePasswd("""
            root:x:0:0:root:/root:/bin/bash
            broken line
            user:x:1000:1001:User:/home/user:/bin/sh
            """)
        #expect(passwd.count == 2)
        #expect(UserDatabase.resolve("user", passwd: passwd) == PasswdEntry(name: "user", uid: 1000, gid: 1001, home: "/home/user", shell: "/bin/sh"))
        #expect(UserDatabase.resolve("1000", passwd: passwd)?.name == "user")
        #expect(UserDatabase.resolve("4242", passwd: passwd) == PasswdEntry(name: "4242", uid: 4242, gid: 4242, home: "/", shell: ""))
        #expect(UserDatabase.resolve("nobody", passwd: passwd) == nil)
        let groups = UserDatabase.parseGroups("wheel:x:10:user,other\nusers:x:1001:user\naudio:x:29:\n")
        #expect(UserDatabase.supplementaryGroups(of: "user", primary: 1001, groups: groups) == [10])
    }

    @Test func machineNames() throws {
        #expect(try ContainerConfiguration(directory: "/var/lib/machines/debian-tree").resolvedMachineName == "debian-tree")
        #expect(try ContainerConfiguration(directory: "/srv/my tree!/").resolvedMachineName == "mytree")
        var c = ContainerConfiguration(directory: "/x")
        c.machineName = "bad/name"
        #expect(throws: RunnerError.invalidMachineName("bad/name")) { try c.validate() }
        c.machineName = "good"
        c.workingDirectory = "relative"
        #expect(throws: RunnerError.relativePath(option: "--chdir", path: "relative")) { try c.validate() }
        c.workingDirectory = nil
        c.environment = ["NOEQUALS"]
        #expect(throws: RunnerError.invalidEnvironment("NOEQUALS")) { try c.validate() }
        c.environment = []
        c.boot = true
        c.asPID2 = true
        #expect(throws: (any Error).self) { try c.validate() }
    }

    @Test func cgroupLayouts() {
        let hybrid = CgroupTree.parseLayout("""
            9:name=systemd:/
            8:pids:/
            4:memory:/process_api/x
            1:cpu,cpuacct:/
            0::/
            """, unifiedMountExists: true)
        #expect(!hybrid.unified)
        #expect(hybrid.hybrid)
        #expect(hybrid.controllers == ["cpu,cpuacct", "memory", "pids"])
        #expect(hybrid.systemdPath == "/")
        let unified = CgroupTree.parseLayout("0::/user.slice/session-1.scope\n", unifiedMountExists: false)
        #expect(unified.unified)
        #expect(unified.unifiedPath == "/user.slice/session-1.scope")
        #expect(unified.controllers.isEmpty)
    }
}
