import Foundation
import Testing
import TestSupport
@testable import Netlink

/// Links, addresses and routes made for real, each test in network namespaces it creates (with
/// unshare(2) in a thread of its own): nothing touches this machine's own namespace, and the one
/// ping goes between two namespaces the test made.
@Suite("netlink in private namespaces", .serialized)
struct NamespaceTests {
    /// A "host" and a "container" namespace, each with a socket bound to it.
    struct Pair {
        let host: NetworkNamespace
        let container: NetworkNamespace
        let hostSocket: RouteSocket
        let containerSocket: RouteSocket
        init() throws {
            try Privileged.require(.root)
            host = try NetworkNamespace.create()
            container = try NetworkNamespace.create()
            hostSocket = try RouteSocket.open(in: host)
            containerSocket = try RouteSocket.open(in: container)
        }

        /// Runs a program inside `namespace` (nsenter through this process's descriptor of it).
        func run(in namespace: NetworkNamespace, _ program: String, _ arguments: [String]) throws -> Tool.Result {
            try Tool.run("nsenter", ["--net=/proc/\(getpid())/fd/\(namespace.fd)", program] + arguments)
        }
    }

    @Test func namespacesAreFreshAndDistinct() throws {
        let pair = try Pair()
        #expect(!pair.host.isSame(as: pair.container))
        #expect(try !pair.host.isSame(as: NetworkNamespace.current()))
        #expect(try pair.hostSocket.links().map(\.name) == ["lo"])
    }

    /// The nspawn -n shape: veth with the peer created directly in the container as host0,
    /// addresses on both ends, a default route in the container, and a ping across.
    @Test func vethIntoContainerWithAddressesAndRoute() throws {
        let pair = try Pair()
        let hostMAC = try #require(MACAddress("02:00:00:00:00:01"))
        let containerMAC = try #require(MACAddress("02:00:00:00:00:02"))
        try pair.hostSocket.createVeth("ve-test", mac: hostMAC, peer: "host0", peerMAC: containerMAC,
                                       peerNamespace: .namespace(pair.container))
        let hostLink = try #require(try pair.hostSocket.link(named: "ve-test"))
        #expect(hostLink.kind == "veth" && hostLink.mac == hostMAC && !hostLink.isUp)
        #expect(try pair.hostSocket.link(named: "host0") == nil)
        let host0 = try #require(try pair.containerSocket.link(named: "host0"))
        #expect(host0.mac == containerMAC)

        try pair.hostSocket.addAddress(try #require(InterfaceAddress("10.77.0.1/28")), to: "ve-test")
        try pair.hostSocket.setUp("ve-test")
        try pair.containerSocket.addAddress(try #require(InterfaceAddress("10.77.0.2/28")), to: "host0")
        try pair.containerSocket.addAddress(try #require(InterfaceAddress("fe80::2/64")), to: "host0")
        try pair.containerSocket.setUp("host0")
        try pair.containerSocket.setUp("lo")
        try pair.containerSocket.addRoute(via: IPAddress("10.77.0.1"), link: "host0")

        let addresses = try pair.containerSocket.addresses().filter { $0.interfaceIndex == host0.index }.map(\.address.description)
        #expect(addresses.contains("10.77.0.2/28") && addresses.contains("fe80::2/64"))
        let routes = try pair.containerSocket.routes()
        #expect(routes.contains { $0.destination == nil && $0.gateway == IPAddress("10.77.0.1") && $0.outputInterface == host0.index })
        #expect(routes.contains { $0.destination == InterfaceAddress("10.77.0.0/28") })

        let ping = try pair.run(in: pair.container, "busybox", ["ping", "-c", "1", "-W", "3", "10.77.0.1"])
        #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")

        // Deleting one end removes the pair.
        #expect(try pair.hostSocket.deleteLink("ve-test"))
        #expect(try pair.containerSocket.link(named: "host0") == nil)
        #expect(try pair.hostSocket.deleteLink("ve-test") == false)
    }

    @Test func bridgeMembership() throws {
        let pair = try Pair()
        let socket = pair.hostSocket
        try socket.createBridge("vz-test")
        try socket.createVeth("vb-a", peer: "vb-a-peer")
        try socket.setMaster("vb-a", bridge: "vz-test")
        let bridge = try #require(try socket.link(named: "vz-test"))
        #expect(bridge.kind == "bridge")
        #expect(try socket.link(named: "vb-a")?.master == bridge.index)
        try socket.setMaster("vb-a", bridge: nil)
        #expect(try socket.link(named: "vb-a")?.master == nil)
        try socket.setUp("vz-test")
        #expect(try socket.link(named: "vz-test")?.isUp == true)
        try socket.setUp("vz-test", false)
        #expect(try socket.link(named: "vz-test")?.isUp == false)
        #expect(try socket.deleteLink("vz-test"))
    }

    @Test func macvlanIntoContainerOnVethParent() throws {
        let pair = try Pair()
        try pair.hostSocket.createVeth("parent0", peer: "parent0p")
        let mac = try #require(MACAddress("02:aa:00:00:00:07"))
        try pair.hostSocket.createMacvlan("mv-parent0", parent: "parent0", mac: mac, namespace: .namespace(pair.container))
        #expect(try pair.hostSocket.link(named: "mv-parent0") == nil)
        let link = try #require(try pair.containerSocket.link(named: "mv-parent0"))
        #expect(link.kind == "macvlan" && link.mac == mac)
    }

    /// This machine's kernel has no ipvlan: the error says what and where, in words.
    @Test func ipvlanErrorOrLink() throws {
        let pair = try Pair()
        try pair.hostSocket.createVeth("parent1", peer: "parent1p")
        do {
            try pair.hostSocket.createIPvlan("iv-parent1", parent: "parent1", namespace: .namespace(pair.container))
            #expect(try pair.containerSocket.link(named: "iv-parent1")?.kind == "ipvlan")
        } catch let error as NetlinkError {
            // The kernel's own answer for a link kind it does not have, not any failure.
            #expect(error.errno == EOPNOTSUPP, "\(error)")
            #expect(error.kernelMessage == "this kernel has no ipvlan support", "\(error)")
            #expect(error.link == "iv-parent1")
        }
    }

    /// --network-interface: moved in under another name, and back out under its own.
    @Test func moveAndRenameBetweenNamespaces() throws {
        let pair = try Pair()
        try pair.hostSocket.createVeth("moveme", peer: "moveme-p")
        try pair.hostSocket.move("moveme", to: .namespace(pair.container), newName: "eth7")
        #expect(try pair.hostSocket.link(named: "moveme") == nil)
        #expect(try pair.containerSocket.link(named: "eth7")?.kind == "veth")
        try pair.containerSocket.move("eth7", to: .namespace(pair.host), newName: "moveme")
        #expect(try pair.hostSocket.link(named: "moveme") != nil)
        try pair.hostSocket.rename("moveme", to: "renamed0")
        #expect(try pair.hostSocket.link(named: "renamed0") != nil)
    }

    @Test func errorsNameOperationAndLink() throws {
        let pair = try Pair()
        try pair.hostSocket.createBridge("br-dup")
        #expect {
            try pair.hostSocket.createBridge("br-dup")
        } throws: { error in
            let e = error as? NetlinkError
            return e?.errno == EEXIST && e?.description.hasPrefix("cannot create bridge (br-dup): File exists") == true
        }
        #expect {
            try pair.hostSocket.setUp("no-such-if")
        } throws: { error in
            (error as? NetlinkError)?.description == "cannot set link up (no-such-if): No such device (no such interface)"
        }
        #expect {
            try pair.hostSocket.createBridge("a-name-longer-than-15")
        } throws: { error in
            (error as? NetlinkError)?.description.contains("not a valid interface name") == true
        }
    }
}
