import Testing
@testable import Network
import Netlink

/// Names, MACs and option values as nspawn makes and reads them, without root.
@Suite("network names and settings")
struct NamingTests {
    /// The machine ID and the values systemd-nspawn 252 gave on this kind of host for
    /// `systemd-nspawn -M averyveryverylongmachine -n` (read from `ip link` on the host side and
    /// /sys/class/net/host0/address inside).
    static let machineID: [UInt8] = [0x3d, 0x12, 0x19, 0xc7, 0xc4, 0xc5, 0x40, 0x4a, 0xaa, 0x1f, 0x6d, 0x2a, 0x48, 0xad, 0xfd, 0xa4]

    @Test func sipHashReferenceVectors() {
        // The SipHash paper's key 00..0f: the empty message and the 15-byte message 00..0e.
        let key = (0..<16).map { UInt8($0) }
        #expect(SipHash24.hash([], key: key) == 0x726f_db47_dd0e_0e31)
        #expect(SipHash24.hash((0..<15).map { UInt8($0) }, key: key) == 0xa129_ca61_49be_45e5)
    }

    @Test func shortenedNamesAsNspawn() {
        #expect(InterfaceNames.hostVeth(machine: "averyveryverylongmachine", bridged: false) == "ve-averyvervmnQ")
        #expect(InterfaceNames.hostVeth(machine: "short", bridged: false) == "ve-short")
        #expect(InterfaceNames.hostVeth(machine: "short", bridged: true) == "vb-short")
        // Exactly 15 bytes stays; 16 is shortened to 15.
        #expect(InterfaceNames.shortened("ve-123456789012") == "ve-123456789012")
        #expect(InterfaceNames.shortened("ve-1234567890123").utf8.count == 15)
        #expect(InterfaceNames.shortened("ve-1234567890123").hasPrefix("ve-12345678"))
    }

    @Test func stableMACsAsNspawn() {
        let name = "averyveryverylongmachine"
        #expect(StableMAC.generate(machine: name, kind: .vethHost, machineID: Self.machineID).description == "fe:b8:57:d2:e4:ad")
        #expect(StableMAC.generate(machine: name, kind: .vethContainer, machineID: Self.machineID).description == "0e:c5:f7:66:5e:ff")
        // Other kinds and indexes differ, and every one is unicast and locally administered.
        let macs = [StableMAC.generate(machine: name, kind: .macvlan, machineID: Self.machineID),
                    StableMAC.generate(machine: name, kind: .macvlan, index: 1, machineID: Self.machineID),
                    StableMAC.generate(machine: name, kind: .extraHost, machineID: Self.machineID)]
        #expect(Set(macs).count == 3)
        #expect(macs.allSatisfy { $0.bytes[0] & 0x03 == 0x02 })
    }

    @Test func interfaceNameValidation() throws {
        #expect(try NetworkOptionParser.interfaceName("eth0", option: "--network-interface") == "eth0")
        for (bad, message) in [
            ("", "--network-interface: missing interface name"),
            ("averyveryverylongname", "--network-interface: interface name 'averyveryverylongname' is too long (at most 15 bytes)"),
            ("a/b", "--network-interface: 'a/b' is not a valid interface name"),
            ("42", "--network-interface: '42' is not a valid interface name"),
            ("..", "--network-interface: '..' is not a valid interface name"),
        ] {
            #expect(throws: NetworkSettingsError(message)) { try NetworkOptionParser.interfaceName(bad, option: "--network-interface") }
        }
    }

    @Test func zones() throws {
        #expect(try NetworkOptionParser.zone("lab") == "lab")
        #expect(throws: NetworkSettingsError("--network-zone: 'a/b' is not a valid zone name ('vz-a/b' is not an interface name)")) {
            try NetworkOptionParser.zone("a/b")
        }
        #expect(throws: NetworkSettingsError("--network-zone: zone name 'abcdefghijklm' is too long (at most 12 bytes)")) {
            try NetworkOptionParser.zone("abcdefghijklm")
        }
    }

    @Test func ports() throws {
        #expect(try NetworkOptionParser.port("8080") == PortForward(proto: .tcp, hostPort: 8080, containerPort: 8080))
        #expect(try NetworkOptionParser.port("tcp:8080:80") == PortForward(proto: .tcp, hostPort: 8080, containerPort: 80))
        #expect(try NetworkOptionParser.port("udp:53:5353") == PortForward(proto: .udp, hostPort: 53, containerPort: 5353))
        #expect(throws: NetworkSettingsError("--port: port 65536 is out of range (1-65535)")) { try NetworkOptionParser.port("65536") }
        #expect(throws: NetworkSettingsError("--port: port 0 is out of range (1-65535)")) { try NetworkOptionParser.port("tcp:0:80") }
        #expect(throws: NetworkSettingsError("--port: 'sctp:1' is not [tcp|udp:]HOSTPORT[:CONTAINERPORT]")) { try NetworkOptionParser.port("sctp:1") }
        #expect(throws: NetworkSettingsError("--port: '1:2:3' is not [tcp|udp:]HOSTPORT[:CONTAINERPORT]")) { try NetworkOptionParser.port("1:2:3") }
        #expect(throws: NetworkSettingsError("--port: '+80' is not [tcp|udp:]HOSTPORT[:CONTAINERPORT]")) { try NetworkOptionParser.port("+80") }
    }

    @Test func pairsAndDefaults() throws {
        #expect(try NetworkOptionParser.vethExtra("h1") == InterfacePair(host: "h1", container: "h1"))
        #expect(try NetworkOptionParser.vethExtra("h1:c1") == InterfacePair(host: "h1", container: "c1"))
        #expect(try NetworkOptionParser.hostInterface("eth1", option: "--network-macvlan", prefix: "mv-")
                == InterfacePair(host: "eth1", container: "mv-eth1"))
        #expect(try NetworkOptionParser.hostInterface("eth1:lan", option: "--network-interface")
                == InterfacePair(host: "eth1", container: "lan"))
    }

    @Test func combinations() throws {
        var s = NetworkSettings()
        #expect(!s.isEnabled)
        s.ports = [try NetworkOptionParser.port("80")]
        #expect(s.isEnabled)
        #expect(throws: NetworkSettingsError("--port= needs a virtual Ethernet link (--network-veth, --network-bridge= or --network-zone=)")) { try s.validate() }
        s.veth = true
        try s.validate()
        s.bridge = "br0"
        s.zone = "lab"
        #expect(throws: NetworkSettingsError("--network-bridge= and --network-zone= are mutually exclusive")) { try s.validate() }
    }
}
