import Foundation
import Network
import Testing
import TestSupport
@testable import Runner

@Suite("nspawn settings files")
struct NspawnSettingsTests {
    func parse(_ text: String, path: String = "/x/m.nspawn") throws(NspawnSettings.Error) -> NspawnSettings {
        try NspawnSettings.parse(Array(text.utf8), path: path)
    }

    func malformedLine(_ text: String) -> Int? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            if case .malformed(_, let line, _) = error { return line }
            return nil
        }
    }

    @Test func sectionsCommentsContinuationsAndQuotes() throws {
        let s = try parse("""
            # a comment
            ; another
            [Exec]
            Boot=no
            Parameters=/bin/sh -c "echo 'a b'" \\
            # a comment inside the continuation is dropped
              last
            Environment=A=1 "B=two words"
            Environment=C='x y'
            Hostname = spaced.example\u{20}
            Capability=CAP_SYS_MODULE cap_net_admin
            DropCapability=CAP_CHOWN
            LimitNOFILE=100:200
            LimitNOFILE=300
            CPUAffinity=0
            CPUAffinity=2-3
            MachineID=0123456789abcdef0123456789abcdef
            KillSignal=SIGUSR1
            [Files]
            ReadOnly=yes
            Volatile=state
            Bind=/srv:/mnt:norbind
            BindReadOnly=/etc
            TemporaryFileSystem=/scratch:size=1M
            OverlayReadOnly=/a:/b:/target
            [Network]
            Private=on
            """)
        #expect(s.startMode == .pid1)
        #expect(s.parameters == ["/bin/sh", "-c", "echo 'a b'", "last"])
        #expect(s.environment == ["A=1", "B=two words", "C=x y"])
        #expect(s.hostname == "spaced.example")
        #expect(s.capability == [Capability(name: "SYS_MODULE")!, Capability(name: "NET_ADMIN")!])
        #expect(s.dropCapability == [Capability(name: "CHOWN")!])
        #expect(s.resourceLimits == [.init(resource: 7, soft: 300, hard: 300)])
        #expect(s.cpuAffinity == [0, 2, 3])
        #expect(s.machineID == UUID(uuidString: "01234567-89ab-cdef-0123-456789abcdef"))
        #expect(s.killSignal == 10)
        #expect(s.readOnly == true)
        #expect(s.volatile == .state)
        #expect(s.mounts.count == 4)
        #expect(s.mounts.first == .bind(source: MountPath(path: "/srv", inRoot: false), target: "/mnt", readOnly: false, recursive: false))
        #expect(s.privateNetwork == true)
        #expect(s.warnings.isEmpty)
    }

    @Test func emptyAssignmentResetsAListAndUnsetsAValue() throws {
        let s = try parse("[Exec]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\nHostname=h\nHostname=\nParameters=a\nParameters=\n[Files]\nBind=/a\nBind=\nBind=/b\n")
        #expect(s.environment == ["B=2"])
        #expect(s.hostname == nil)
        #expect(s.parameters == nil)
        #expect(s.mounts == [.bind(source: MountPath(path: "/b", inRoot: false), target: "/b", readOnly: false, recursive: true)])
    }

    @Test func unknownAndUnsupportedAreWarningsNotErrors() throws {
        let s = try parse("""
            Stray=1
            [Exec]
            NoSuchKey=1
            PivotRoot=/sysroot
            X-Custom=ignored silently
            [Unit]
            Description=whatever
            [X-Vendor]
            Anything=1
            [Files]
            Inaccessible=/secret
            [Network]
            VirtualEthernet=yes
            Port=80
            """)
        #expect(s.warnings.count == 5)
        #expect(s.warnings[0] == "/x/m.nspawn:1: assignment outside of a section, ignoring")
        #expect(s.warnings[1] == "/x/m.nspawn:3: unknown key NoSuchKey= in section [Exec], ignoring")
        #expect(s.warnings[2] == "/x/m.nspawn:4: ignoring PivotRoot= (not supported by imagectl)")
        #expect(s.warnings[3] == "/x/m.nspawn:6: unknown section [Unit], ignoring")
        #expect(s.warnings.contains("/x/m.nspawn:11: ignoring Inaccessible= (not supported by imagectl)"))
        // [Network] links and ports are read now, not warned about.
        #expect(s.networkKeys == ["VirtualEthernet"])
        #expect(s.network.veth && s.network.ports.map(\.hostPort) == [80])
    }

    /// Every [Network] key, read with the command line's parsers.
    @Test func networkKeys() throws {
        let s = try parse("""
            [Network]
            VirtualEthernet=no
            VirtualEthernetExtra=h1:c1
            Interface=eth1 eth2:lan
            MACVLAN=eth3
            IPVLAN=eth4:iv
            Zone=lab
            Port=udp:53:5353
            Port=8080
            """)
        #expect(s.networkKeys == ["VirtualEthernet", "VirtualEthernetExtra", "Interface", "MACVLAN", "IPVLAN", "Zone"])
        #expect(!s.network.veth)
        #expect(s.network.vethExtra == [InterfacePair(host: "h1", container: "c1")])
        #expect(s.network.interfaces == [InterfacePair(host: "eth1", container: "eth1"), InterfacePair(host: "eth2", container: "lan")])
        #expect(s.network.macvlan == [InterfacePair(host: "eth3", container: "mv-eth3")])
        #expect(s.network.ipvlan == [InterfacePair(host: "eth4", container: "iv")])
        #expect(s.network.zone == "lab")
        #expect(s.network.ports == [PortForward(proto: .udp, hostPort: 53, containerPort: 5353),
                                    PortForward(proto: .tcp, hostPort: 8080, containerPort: 8080)])
        #expect(malformedLine("[Network]\nZone=a/b\n") == 2)
        #expect(malformedLine("[Network]\nPort=70000\n") == 2)
        #expect(malformedLine("[Network]\nInterface=averyveryverylongname\n") == 2)
        #expect(malformedLine("[Network]\nVirtualEthernet=maybe\n") == 2)
    }

    /// systemd.nspawn(5): links only from a trusted file (they imply a private network), Port=
    /// too, each under its own command-line mask.
    @Test func networkKeysTrustAndMask() throws {
        let s = try parse("[Network]\nVirtualEthernet=yes\nBridge=br0\nPort=8080:80\n")
        var untrusted = configuration()
        let warnings = try s.apply(to: &untrusted, mask: [], trusted: false, path: "p")
        #expect(untrusted.network == NetworkSettings() && !untrusted.privateNetwork)
        #expect(warnings == ["ignoring [Network] settings: settings file p is not trusted",
                             "ignoring Port=: settings file p is not trusted"])
        var trusted = configuration()
        #expect(try s.apply(to: &trusted, mask: [], trusted: true, path: "p").isEmpty)
        #expect(trusted.privateNetwork && trusted.network.veth && trusted.network.bridge == "br0")
        #expect(trusted.network.ports == [PortForward(proto: .tcp, hostPort: 8080, containerPort: 80)])
        var masked = configuration()
        masked.network.ports = [PortForward(proto: .tcp, hostPort: 1, containerPort: 1)]
        _ = try s.apply(to: &masked, mask: [.network, .ports], trusted: true, path: "p")
        #expect(!masked.network.veth && masked.network.ports.map(\.hostPort) == [1])
    }

    @Test func malformedInputNamesTheFileAndLine() throws {
        #expect(malformedLine("[Exec]\nBoot=perhaps\n") == 2)
        #expect(malformedLine("[Exec]\n\nnot an assignment\n") == 3)
        #expect(malformedLine("[Exec\nBoot=yes\n") == 1)
        #expect(malformedLine("[Exec]\nParameters=\"unbalanced\n") == 2)
        #expect(malformedLine("[Exec]\nBoot=yes\nProcessTwo=yes\n") == 3)
        #expect(malformedLine("[Exec]\nCapability=CAP_NOPE\n") == 2)
        #expect(malformedLine("[Exec]\nEnvironment=NOEQUALS\n") == 2)
        #expect(malformedLine("[Exec]\nWorkingDirectory=relative\n") == 2)
        #expect(malformedLine("[Exec]\nLimitNOFILE=lots\n") == 2)
        #expect(malformedLine("[Exec]\nPrivateUsers=banana\n") == 2)
        #expect(malformedLine("[Exec]\nSystemCallFilter=no_such_call_xyz\n") == 2)
        #expect(malformedLine("[Files]\nBind=relative:/x\n") == 2)
        #expect(malformedLine("[Files]\nVolatile=sometimes\n") == 2)
        #expect(malformedLine("[Network]\nPrivate=2\n") == 2)
        #expect(malformedLine("[Exec]\nBoot=yes\0\n") == 2)
        do {
            _ = try parse("[Exec]\nHostname=a..b\n", path: "/etc/systemd/nspawn/m.nspawn")
            Issue.record("no error")
        } catch {
            #expect(error.description.hasPrefix("settings file /etc/systemd/nspawn/m.nspawn:2: Hostname=a..b:"))
        }
        #expect(throws: NspawnSettings.Error.tooLarge(path: "/x/m.nspawn")) {
            try NspawnSettings.parse([UInt8](repeating: 0x23, count: NspawnSettings.maximumSize + 1), path: "/x/m.nspawn")
        }
    }

    @Test func invalidUTF8LineIsSkippedWithAWarning() throws {
        let s = try NspawnSettings.parse(Array("[Exec]\nHostname=a\n".utf8) + [0x55, 0x73, 0xff, 0x3d, 0x31, 0x0a] + Array("User=u\n".utf8), path: "p")
        #expect(s.hostname == "a" && s.user == "u")
        #expect(s.warnings == ["p:3: invalid UTF-8, ignoring the line"])
    }

    // MARK: merge

    func configuration() -> ContainerConfiguration { ContainerConfiguration(directory: "/var/lib/machines/m") }

    @Test func commandLineWinsUnlessOverride() throws {
        let s = try parse("[Exec]\nBoot=no\nParameters=/bin/echo file\nEnvironment=FROM=file\nHostname=file\nUser=daemon\n[Files]\nReadOnly=yes\n")
        var cli = configuration()
        cli.command = ["/bin/echo", "cli"]
        cli.hostname = "cli"
        cli.environment = ["FROM=cli"]
        var masked = cli
        _ = try s.apply(to: &masked, mask: [.startMode, .hostname, .environment], trusted: false, path: "p")
        #expect(masked.command == ["/bin/echo", "cli"])
        #expect(masked.hostname == "cli")
        #expect(masked.environment == ["FROM=cli"])
        #expect(masked.user == "daemon")
        #expect(masked.readOnly)
        var overridden = cli
        _ = try s.apply(to: &overridden, mask: [], trusted: false, path: "p")
        #expect(overridden.command == ["/bin/echo", "file"])
        #expect(overridden.hostname == "file")
        #expect(overridden.environment == ["FROM=file"])
    }

    @Test func parametersWithoutAStartModeAreIgnoredAsNspawnDoes() throws {
        let s = try parse("[Exec]\nParameters=/bin/echo hi\n")
        var c = configuration()
        let warnings = try s.apply(to: &c, mask: [], trusted: true, path: "p")
        #expect(c.command.isEmpty)
        #expect(warnings == ["ignoring Parameters= in p: it needs Boot= or ProcessTwo= (as in systemd-nspawn)"])
        let boot = try parse("[Exec]\nBoot=yes\nParameters=systemd.unit=rescue.target\n")
        _ = try boot.apply(to: &c, mask: [], trusted: false, path: "p")
        #expect(c.boot && c.command == ["systemd.unit=rescue.target"])
    }

    static let privileged = """
        [Exec]
        Capability=CAP_SYS_MODULE
        DropCapability=CAP_MKNOD
        MachineID=0123456789abcdef0123456789abcdef
        Ephemeral=yes
        LimitNOFILE=64
        OOMScoreAdjust=500
        CPUAffinity=0
        PrivateUsers=pick
        SystemCallFilter=~@clock
        Hostname=still.applies
        [Files]
        Bind=/etc:/mnt
        PrivateUsersOwnership=map
        [Network]
        Private=yes
        """

    /// In a file, PrivateUsers=1 and =0 are booleans (nspawn's settings parser); other numbers are
    /// bases, as on the command line.
    @Test func privateUsersNumbersInAFile() throws {
        func mode(_ value: String) throws -> UserNamespaceSettings.Mode {
            var c = configuration()
            _ = try parse("[Exec]\nPrivateUsers=\(value)\n").apply(to: &c, mask: [], trusted: true, path: "/etc/systemd/nspawn/m.nspawn")
            return c.userNamespace.mode
        }
        #expect(try mode("1") == .fromRootOwner)
        #expect(try mode("0") == .off)
        #expect(try mode("2") == .fixed(base: 2, size: 65536))
        #expect(try mode("524288:65536") == .fixed(base: 524288, size: 65536))
        #expect(try mode("pick") == .pick)
    }

    @Test func anUntrustedFileGrantsNothing() throws {
        let s = try parse(Self.privileged)
        var c = configuration()
        let before = c.boundingSet
        let warnings = try s.apply(to: &c, mask: [], trusted: false, path: "/var/lib/machines/m.nspawn")
        #expect(c.addCapabilities.isEmpty)
        #expect(c.boundingSet == before.subtracting([Capability(name: "MKNOD")!]))
        #expect(c.uuid == nil)
        #expect(!c.ephemeral)
        #expect(c.process.resourceLimits.isEmpty)
        #expect(c.process.oomScoreAdjust == nil)
        #expect(c.process.cpuAffinity == nil)
        #expect(c.userNamespace == UserNamespaceSettings())
        #expect(c.mounts.extra.isEmpty)
        #expect(!c.privateNetwork)
        // Denying calls and naming the host are not privileges.
        #expect(c.systemCallFilter.deny == ["@clock"])
        #expect(c.hostname == "still.applies")
        for what in ["Capability=", "MachineID=", "Ephemeral=", "LimitNOFILE=", "OOMScoreAdjust=", "CPUAffinity=",
                     "PrivateUsers= and PrivateUsersOwnership=", "Bind=, BindReadOnly=, TemporaryFileSystem=, Overlay= and OverlayReadOnly=",
                     "[Network] settings"] {
            #expect(warnings.contains("ignoring \(what): settings file /var/lib/machines/m.nspawn is not trusted"), "\(what)")
        }
        let allow = try parse("[Exec]\nSystemCallFilter=~@clock\nSystemCallFilter=@module\n")
        var d = configuration()
        let w = try allow.apply(to: &d, mask: [], trusted: false, path: "p")
        #expect(d.systemCallFilter.isEmpty)
        #expect(w == ["ignoring SystemCallFilter=: settings file p is not trusted"])
    }

    @Test func aTrustedFileGrantsWhatItSays() throws {
        let s = try parse(Self.privileged)
        var c = configuration()
        let warnings = try s.apply(to: &c, mask: [], trusted: true, path: "p")
        #expect(warnings.isEmpty)
        #expect(c.boundingSet.contains(Capability(name: "SYS_MODULE")!))
        #expect(!c.boundingSet.contains(Capability(name: "MKNOD")!))
        #expect(c.uuid == UUID(uuidString: "01234567-89ab-cdef-0123-456789abcdef"))
        #expect(c.ephemeral)
        #expect(c.process.resourceLimits == [.init(resource: 7, soft: 64, hard: 64)])
        #expect(c.process.oomScoreAdjust == 500 && c.process.cpuAffinity == [0])
        #expect(c.userNamespace == UserNamespaceSettings(mode: .pick, ownership: .map))
        #expect(c.mounts.extra == [.bind(source: MountPath(path: "/etc", inRoot: false), target: "/mnt", readOnly: false, recursive: true)])
        #expect(c.privateNetwork)
        // The command line's own mounts and capabilities mask the file's.
        var masked = configuration()
        _ = try s.apply(to: &masked, mask: [.customMounts, .capability, .network], trusted: true, path: "p")
        #expect(masked.mounts.extra.isEmpty && masked.addCapabilities.isEmpty && !masked.privateNetwork)
        #expect(masked.dropCapabilities.isEmpty)
    }

    // MARK: lookup

    @Test func lookupOrderAndTrust() throws {
        let scratch = try TemporaryDirectory(prefix: "nspawn-lookup")
        let etc = scratch.appending("etc"), run = scratch.appending("run"), pool = scratch.appending("pool")
        for directory in [etc, run, pool + "/m"] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let dirs = [etc, run]
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .yes, directories: dirs) == nil)
        // A dangling symlink is no file.
        try FileManager.default.createSymbolicLink(atPath: etc + "/d.nspawn", withDestinationPath: "/nonexistent")
        #expect(SettingsLookup.find(machine: "d", beside: nil, mode: .yes, directories: dirs) == nil)
        _ = FileManager.default.createFile(atPath: pool + "/m.nspawn", contents: Data("[Exec]\n".utf8))
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m/", mode: .yes, directories: dirs) == .init(path: pool + "/m.nspawn", trusted: false))
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .override, directories: dirs)?.trusted == false)
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .trusted, directories: dirs)?.trusted == true)
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .no, directories: dirs) == nil)
        // A raw image: NAME.nspawn beside NAME.raw.
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m.raw", mode: .yes, directories: dirs)?.path == pool + "/m.nspawn")
        // The root directory has no "beside".
        #expect(SettingsLookup.find(machine: "m", beside: "/", mode: .yes, directories: dirs) == nil)
        _ = FileManager.default.createFile(atPath: run + "/m.nspawn", contents: Data())
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .yes, directories: dirs) == .init(path: run + "/m.nspawn", trusted: true))
        _ = FileManager.default.createFile(atPath: etc + "/m.nspawn", contents: Data())
        #expect(SettingsLookup.find(machine: "m", beside: pool + "/m", mode: .yes, directories: dirs) == .init(path: etc + "/m.nspawn", trusted: true))
        _ = FileManager.default.createFile(atPath: pool + "/big.nspawn", contents: Data(count: NspawnSettings.maximumSize + 10))
        #expect(throws: NspawnSettings.Error.tooLarge(path: pool + "/big.nspawn")) { try SettingsLookup.load(pool + "/big.nspawn") }
        #expect(mkfifo(pool + "/fifo.nspawn", 0o600) == 0)
        #expect(throws: NspawnSettings.Error.unreadable(path: pool + "/fifo.nspawn", reason: "not a regular file")) { try SettingsLookup.load(pool + "/fifo.nspawn") }
    }

    @Test func settingsModes() throws {
        #expect(try SettingsMode.parse("override") == .override)
        #expect(try SettingsMode.parse("trusted") == .trusted)
        #expect(try SettingsMode.parse("false") == .no)
        #expect(try SettingsMode.parse("1") == .yes)
        #expect(throws: RunnerError.invalidOption(option: "--settings", value: "maybe")) { try SettingsMode.parse("maybe") }
    }

    // MARK: fuzzing (SECURITY.md: the .nspawn parser is a fuzz target)

    /// Seeds: every key imagectl knows, the unsupported ones, and the syntax corners.
    static let seeds: [String] = [
        privileged,
        "[Exec]\nBoot=yes\nParameters=a 'b c' \"d\\\"e\"\n",
        "[Exec]\nProcessTwo=yes\nParameters=/bin/sh \\\n -c true\n",
        "[Exec]\nEnvironment=A=1 B=2\nUser=root\nWorkingDirectory=/srv\nNoNewPrivileges=yes\nKillSignal=SIGRTMIN+3\nPersonality=x86\n",
        "[Exec]\nLimitCPU=1\nLimitCORE=infinity\nLimitRTTIME=1:2\nResolvConf=copy-host\nTimezone=off\nNotifyReady=yes\nPrivateUsers=1000:65536\n",
        "[Files]\nOverlay=/a:/b:/c\nOverlay=+/x::/y\nTemporaryFileSystem=/t:mode=0700\nPrivateUsersChown=yes\nVolatile=overlay\n",
        "[Network]\nPrivate=no\nZone=z\nInterface=eth0\nMACVLAN=a\nIPVLAN=b\nBridge=br0\nVirtualEthernetExtra=a:b\n",
        "# c\n; c\n\n[Exec\n", "[]\n=\n[Exec]\n=x\nBoot\n", "[Exec]\nParameters=\"\n", "\\", "[Exec]\nBoot=yes\\",
        "[Exec]\nSystemCallFilter=@clock ~x\nSystemCallFilter=~@module\n",
    ]

    static let tokens: [[UInt8]] = ["[", "]", "=", "\\\n", "\"", "'", "\n", "\0", "#", "~", ":", "+", " ", "\r\n",
                                     "[Exec]\n", "[Files]\n", "[Network]\n", "all", "-1", "\u{FFFF}"].map { Array($0.utf8) } + [[0xff], [0xc3], [0x80]]

    static func mutate(_ input: [UInt8], _ g: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &g) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &g)
            switch Int.random(in: 0..<6, using: &g) {
            case 0 where !bytes.isEmpty && position < bytes.count: bytes[position] ^= UInt8.random(in: 1...255, using: &g)
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &g), at: position)
            case 2 where !bytes.isEmpty && position < bytes.count:
                bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...16, using: &g)))
            case 3: bytes.insert(contentsOf: tokens[Int.random(in: 0..<tokens.count, using: &g)], at: position)
            case 4:
                let other = Array(seeds[Int.random(in: 0..<seeds.count, using: &g)].utf8)
                bytes = Array(bytes[..<position]) + other[Int.random(in: 0...other.count, using: &g)...]
            default:
                if position < bytes.count { bytes.insert(contentsOf: bytes[position..<min(bytes.count, position + 32)], at: position) }
            }
        }
        return bytes
    }

    @Test func fuzzReplayOfSeedsAndMutations() throws {
        var g = SeededGenerator(seed: 0x6e73_7061_776e)
        var parsed = 0, rejected = 0
        let inputs = Self.seeds.map { Array($0.utf8) }
        for iteration in 0..<4000 {
            let input = iteration < inputs.count ? inputs[iteration] : Self.mutate(inputs[iteration % inputs.count], &g)
            do {
                let settings = try NspawnSettings.parse(input, path: "fuzz")
                parsed += 1
                #expect(settings.warnings.allSatisfy { $0.hasPrefix("fuzz:") })
                // Merging never traps either, trusted or not, masked or not.
                var c = ContainerConfiguration(directory: "/m")
                _ = try? settings.apply(to: &c, mask: Bool.random(using: &g) ? [] : [.startMode, .capability], trusted: Bool.random(using: &g), path: "fuzz")
            } catch {
                rejected += 1
                #expect(error.description.hasPrefix("settings file fuzz"))
            }
        }
        #expect(parsed > 100 && rejected > 100)
    }
}
