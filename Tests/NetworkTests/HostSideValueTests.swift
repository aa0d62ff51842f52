import Foundation
import Testing
@testable import Network
import Netlink

/// Address allocation, dnsmasq arguments and nftables rules as values, without root.
@Suite("address pool and rules")
struct PoolAndRulesTests {
    @Test func allocationSkipsRoutedRanges() throws {
        let pool = try AddressPool(parsing: "192.168.0.0/16")
        #expect(pool.allocate(avoiding: [])?.description == "192.168.0.0/28")
        // A host LAN on 192.168.0.0/24 and another machine's 192.168.1.0/28; the default route does not count.
        let taken = [InterfaceAddress("192.168.0.0/24")!, InterfaceAddress("192.168.1.0/28")!, InterfaceAddress("0.0.0.0/0")!,
                     InterfaceAddress("192.168.1.17/32")!]
        #expect(pool.allocate(avoiding: taken)?.description == "192.168.1.32/28")
        let tiny = try AddressPool(parsing: "10.9.9.0/28")
        #expect(tiny.allocate(avoiding: [InterfaceAddress("10.0.0.0/8")!]) == nil)
        #expect(throws: NetworkSettingsError("address pool '8.8.0.0/16' is not a private (RFC 1918) range")) { try AddressPool(parsing: "8.8.0.0/16") }
        #expect(throws: NetworkSettingsError("address pool '10.0.0.0/30' is not an IPv4 network of /28 or larger")) { try AddressPool(parsing: "10.0.0.0/30") }
        let subnet = try #require(pool.allocate(avoiding: []))
        #expect(subnet.hostAddress.description == "192.168.0.1/28")
        #expect(subnet.address(2).description == "192.168.0.2")
    }

    @Test func dnsmasqArguments() {
        let config = DnsmasqConfiguration(interface: "ve-web", subnet: Subnet(base: 0xc0a8_0010), stateDirectory: "/run/imagectl/network")
        let args = config.arguments(user: "dnsmasq")
        #expect(args.contains("--conf-file=/dev/null"))
        #expect(args.contains("--interface=ve-web") && args.contains("--bind-interfaces"))
        #expect(args.contains("--listen-address=192.168.0.17"))
        #expect(args.contains("--dhcp-range=192.168.0.18,192.168.0.30,255.255.255.240,1h"))
        let lines = DnsmasqConfiguration.hostsLines([.init(name: "web", mac: "0e:c5:f7:66:5e:ff", address: "192.168.0.18")])
        #expect(lines.dhcp == "0e:c5:f7:66:5e:ff,192.168.0.18,web\n")
        #expect(lines.hosts == "192.168.0.18 web\n")
    }

    /// A machine's rules are elements of the shared table: its subnet in the masquerade set, each
    /// forward in the port map, keyed by protocol and host port, as nft's own syntax.
    @Test func firewallElements() {
        let rules = FirewallRules(masquerade: Subnet(base: 0xc0a8_0010),
                                  ports: [PortForward(proto: .tcp, hostPort: 8080, containerPort: 80),
                                          PortForward(proto: .udp, hostPort: 5353, containerPort: 53)], target: .v4(0xc0a8_0012))
        #expect(rules.elements.map(\.addition) == [
            "add element ip imagectl subnets { 192.168.0.16/28 }",
            "add element ip imagectl ports { tcp . 8080 : 192.168.0.18 . 80 }",
            "add element ip imagectl ports { udp . 5353 : 192.168.0.18 . 53 }",
        ])
        #expect(rules.elements.map(\.deletion) == [
            "delete element ip imagectl subnets { 192.168.0.16/28 }",
            "delete element ip imagectl ports { tcp . 8080 }",
            "delete element ip imagectl ports { udp . 5353 }",
        ])
        #expect(FirewallRules(masquerade: nil, ports: [], target: nil).isEmpty)
        // Forwards without an address to forward to are no rules.
        #expect(FirewallRules(masquerade: nil, ports: rules.ports, target: nil).isEmpty)
    }
}
