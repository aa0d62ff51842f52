import CShims
import Foundation
import Testing
import TestSupport
@testable import Network
import Netlink

/// `HostNetwork` for real. Each test runs on a thread of its own that first moved into a new
/// network namespace (unshare(CLONE_NEWNET) changes only that thread): that namespace is the
/// "host", and the programs the set-up starts (dnsmasq, nft) and the stand-in containers
/// (`unshare --net sleep`) are spawned from it. Nothing reaches this machine's own namespace.
@Suite("host network set-up", .serialized)
struct HostNetworkTests {
    /// The pool of these tests: far from anything a developer's LAN is likely to use.
    static let pool = try! AddressPool(parsing: "10.231.0.0/16")

    /// Runs `body` on a thread inside a fresh network namespace with `lo` up.
    static func inHostNamespace(_ body: @escaping @Sendable (Scratch) throws -> Void) throws {
        try Privileged.require(.root, .tool("dnsmasq"), .tool("nft"), .tool("busybox"))
        let scratch = try Scratch()
        final class Outcome: @unchecked Sendable { var error: Error? }  // written before the signal, read after
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            do {
                try TestNamespace.enterNew()
                try RouteSocket.open().setUp("lo")
                try body(scratch)
            } catch {
                outcome.error = error
            }
        }
        thread.start()
        done.wait()
        if let error = outcome.error { throw error }
    }

    final class Scratch: @unchecked Sendable {
        // Immutable after init.
        let directory: TemporaryDirectory
        var runtime: String { directory.path }
        init() throws { directory = try TemporaryDirectory(prefix: "net-test") }
    }

    /// A stand-in container: `unshare --net sleep 60`, once it is in its own namespace.
    final class Container {
        let process = Process()
        var pid: Int32 { process.processIdentifier }
        init() throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            process.arguments = ["--net", "sleep", "60"]
            try process.run()
            for _ in 0..<200 {
                let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net")) ?? ""
                let its = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net")) ?? own
                if its != own && (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) == "sleep\n" { return }
                usleep(10_000)
            }
            throw TestFailure(text: "the stand-in container did not reach its namespace")
        }

        /// Runs a busybox applet inside the container's network namespace.
        func busybox(_ arguments: [String]) throws -> Tool.Result {
            try Tool.run("nsenter", ["-t", "\(pid)", "-n", "busybox"] + arguments)
        }

        deinit {
            // SIGKILL: the test thread's blocked signals are inherited, a SIGTERM may wait.
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    struct TestFailure: Error, CustomStringConvertible { var text: String; var description: String { text } }

    static func vethSettings(ports: [String] = []) throws -> NetworkSettings {
        var settings = NetworkSettings()
        settings.veth = true
        settings.ports = try ports.map(NetworkOptionParser.port)
        try settings.validate()
        return settings
    }

    /// Elements of imagectl's shared nftables table per set ("subnets", "ports"); nil: no table.
    static func nftElements() -> [String: Int]? { Nftables.elementCounts() }
    static let noElements = ["subnets": 0, "ports": 0]

    /// -n for a plain payload: addresses on both ends, default route, ping, DHCP with the static
    /// lease, DNS by machine name, masquerade and port rules; everything gone after teardown.
    @Test func vethSetUpAndTearDown() throws {
        let realForwarding = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
        try Self.inHostNamespace { scratch in
            let container = try Container()
            let network = try HostNetwork.setUp(Self.vethSettings(ports: ["tcp:8080:80"]), machine: "nettest", containerPID: container.pid,
                                                configureContainer: true, pool: Self.pool, runtimeDirectory: scratch.runtime)
            #expect(network.containerAddress?.description == "10.231.0.2/28")
            #expect(network.gateway?.description == "10.231.0.1")
            let host = try RouteSocket.open()
            let veth = try #require(try host.link(named: "ve-nettest"))
            #expect(veth.isUp)
            #expect(try host.addresses().contains { $0.interfaceIndex == veth.index && $0.address.description == "10.231.0.1/28" })

            let inside = try RouteSocket.open(in: NetworkNamespace.of(pid: container.pid))
            let host0 = try #require(try inside.link(named: "host0"))
            #expect(host0.isUp)
            #expect(try inside.addresses().contains { $0.interfaceIndex == host0.index && $0.address.description == "10.231.0.2/28" })
            #expect(try inside.routes().contains { $0.destination == nil && $0.gateway?.description == "10.231.0.1" })

            let ping = try container.busybox(["ping", "-c", "1", "-W", "3", "10.231.0.1"])
            #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
            // The machine's name resolves through the host side's dnsmasq.
            let lookup = try container.busybox(["nslookup", "nettest", "10.231.0.1"])
            #expect(lookup.stdout.contains("10.231.0.2"), "\(lookup.stdout)\(lookup.stderr)")
            // A DHCP client gets the static lease of host0's MAC.
            let dhcp = try container.busybox(["udhcpc", "-i", "host0", "-n", "-q", "-f", "-t", "3", "-s", "/bin/true"])
            #expect(dhcp.stdout.contains("10.231.0.2") || dhcp.stderr.contains("10.231.0.2"), "\(dhcp.stdout)\(dhcp.stderr)")

            #expect(Self.nftElements() == ["subnets": 1, "ports": 1])
            #expect(try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8) == "1\n")
            let dnsmasqPID = try #require(Dnsmasq.readPID("\(scratch.runtime)/network/ve-nettest.dnsmasq.pid"))
            #expect(HostProcess.commandName(of: dnsmasqPID) == "dnsmasq")

            network.tearDown()
            #expect(try host.link(named: "ve-nettest") == nil)
            #expect(try inside.link(named: "host0") == nil)
            #expect(Self.nftElements() == Self.noElements)
            usleep(100_000)
            #expect(!HostProcess.isAlive(dnsmasqPID))
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(scratch.runtime)/network").filter { $0 != "lock" } == [])
        }
        // This machine's own forwarding setting was never touched.
        #expect(try String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8) == realForwarding)
    }

    /// Two machines asking for one host port: the second is refused before it makes anything.
    @Test func portConflict() throws {
        try Self.inHostNamespace { scratch in
            let first = try Container()
            let second = try Container()
            let network = try HostNetwork.setUp(Self.vethSettings(ports: ["8081"]), machine: "one", containerPID: first.pid,
                                                configureContainer: true, pool: Self.pool, runtimeDirectory: scratch.runtime)
            #expect(throws: NetworkSetupError.portInUse(PortForward(proto: .tcp, hostPort: 8081, containerPort: 80), machine: "one")) {
                _ = try HostNetwork.setUp(Self.vethSettings(ports: ["tcp:8081:80"]), machine: "two", containerPID: second.pid,
                                          configureContainer: true, pool: Self.pool, runtimeDirectory: scratch.runtime)
            }
            #expect(try RouteSocket.open().link(named: "ve-two") == nil)
            // Another protocol on that port is fine, and gets the next /28.
            let udp = try HostNetwork.setUp(Self.vethSettings(ports: ["udp:8081"]), machine: "two", containerPID: second.pid,
                                            configureContainer: true, pool: Self.pool, runtimeDirectory: scratch.runtime)
            #expect(udp.containerAddress?.description == "10.231.0.18/28")
            udp.tearDown()
            network.tearDown()
        }
    }

    /// A machine name too long for "ve-NAME": the link has nspawn's shortened name and the whole
    /// one as an alternative name, which `ip` resolves.
    @Test func longMachineNameGetsAnAlternativeName() throws {
        try Self.inHostNamespace { scratch in
            let container = try Container()
            let machine = "a-rather-long-machine-name"
            let network = try HostNetwork.setUp(Self.vethSettings(), machine: machine, containerPID: container.pid,
                                                configureContainer: false, pool: Self.pool, runtimeDirectory: scratch.runtime)
            let short = InterfaceNames.hostVeth(machine: machine, bridged: false)
            #expect(short.utf8.count == 15)
            let shown = try Tool.run("ip", ["-o", "link", "show", "ve-" + machine])
            #expect(shown.status == 0, "\(shown.stderr)")
            #expect(shown.stdout.contains(": \(short)@") && shown.stdout.contains("altname ve-\(machine)"), "\(shown.stdout)")
            network.tearDown()
            #expect(try RouteSocket.open().link(named: short) == nil)
        }
    }

    /// A record whose imagectl is gone (its lock free) is undone by the next set-up or clean.
    @Test func leftoversOfAKilledRunAreRemoved() throws {
        try Self.inHostNamespace { scratch in
            let container = try Container()
            let network = try HostNetwork.setUp(Self.vethSettings(ports: ["8082"]), machine: "killed", containerPID: container.pid,
                                                configureContainer: false, pool: Self.pool, runtimeDirectory: scratch.runtime)
            // What a kill -9 leaves: the links, rules, dnsmasq and record, with nobody holding the lock.
            network.abandonForTesting()
            #expect(try RouteSocket.open().link(named: "ve-killed") != nil)
            #expect(Self.nftElements() == ["subnets": 1, "ports": 1])
            #expect(HostNetwork.cleanLeftovers(runtimeDirectory: scratch.runtime) == ["killed"])
            #expect(try RouteSocket.open().link(named: "ve-killed") == nil)
            // `clean` also removes the shared table once nothing uses it.
            #expect(Self.nftElements() == nil)
            #expect(HostNetwork.cleanLeftovers(runtimeDirectory: scratch.runtime) == [])
        }
    }

    /// Zone: the first member makes vz-ZONE (with its /28, dnsmasq and masquerade), members reach
    /// each other by name, the bridge goes with the last member.
    @Test func zoneMembers() throws {
        try Self.inHostNamespace { scratch in
            var settings = NetworkSettings()
            settings.zone = "lab"
            let a = try Container()
            let b = try Container()
            let first = try HostNetwork.setUp(settings, machine: "alpha", containerPID: a.pid, configureContainer: true,
                                              pool: Self.pool, runtimeDirectory: scratch.runtime)
            let second = try HostNetwork.setUp(settings, machine: "beta", containerPID: b.pid, configureContainer: true,
                                               pool: Self.pool, runtimeDirectory: scratch.runtime)
            let host = try RouteSocket.open()
            let bridge = try #require(try host.link(named: "vz-lab"))
            #expect(try host.link(named: "vb-alpha")?.master == bridge.index)
            #expect(try host.link(named: "vb-beta")?.master == bridge.index)
            #expect(first.containerAddress?.description == "10.231.0.2/28")
            #expect(second.containerAddress?.description == "10.231.0.3/28")
            let ping = try a.busybox(["ping", "-c", "1", "-W", "3", "10.231.0.3"])
            #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
            let lookup = try a.busybox(["nslookup", "beta", "10.231.0.1"])
            #expect(lookup.stdout.contains("10.231.0.3"), "\(lookup.stdout)\(lookup.stderr)")
            first.tearDown()
            #expect(try host.link(named: "vz-lab") != nil)
            second.tearDown()
            #expect(try host.link(named: "vz-lab") == nil)
            #expect(Self.nftElements() == Self.noElements)
        }
    }

    /// --network-bridge, --network-veth-extra, --network-macvlan and --network-interface (moved
    /// back out under its own name at the end).
    @Test func bridgeExtraMacvlanAndInterface() throws {
        try Self.inHostNamespace { scratch in
            let host = try RouteSocket.open()
            try host.createBridge("br-test")
            try host.createVeth("uplink0", peer: "uplink0p")
            try host.createVeth("spare0", peer: "spare0p")
            var settings = NetworkSettings()
            settings.bridge = "br-test"
            settings.vethExtra = [try NetworkOptionParser.vethExtra("xh0:xc0")]
            settings.macvlan = [try NetworkOptionParser.hostInterface("uplink0", option: "--network-macvlan", prefix: "mv-")]
            settings.interfaces = [try NetworkOptionParser.hostInterface("spare0:lan0", option: "--network-interface")]
            try settings.validate()
            let container = try Container()
            let network = try HostNetwork.setUp(settings, machine: "multi", containerPID: container.pid, configureContainer: true,
                                                pool: Self.pool, runtimeDirectory: scratch.runtime)
            let bridge = try #require(try host.link(named: "br-test"))
            #expect(try host.link(named: "vb-multi")?.master == bridge.index)
            #expect(network.containerAddress == nil)  // the bridge's owner addresses it
            #expect(try host.link(named: "xh0") != nil)
            #expect(try host.link(named: "spare0") == nil)
            let inside = try RouteSocket.open(in: NetworkNamespace.of(pid: container.pid))
            let names = Set(try inside.links().map(\.name))
            #expect(names.isSuperset(of: ["host0", "xc0", "mv-uplink0", "lan0"]))
            network.tearDown()
            #expect(try host.link(named: "spare0") != nil)
            #expect(try host.link(named: "vb-multi") == nil && host.link(named: "xh0") == nil)
            #expect(try host.link(named: "br-test") != nil)
        }
    }
}

/// Moves the calling thread (only) into a new network namespace.
enum TestNamespace {
    static func enterNew() throws {
        guard img_unshare_net() == 0 else { throw HostNetworkTests.TestFailure(text: "unshare(CLONE_NEWNET): errno \(errno)") }
    }
}

extension HostNetworkTests {
    /// A VM's tap (made here with `ip tuntap`, as qemu would make it) gets the veth's host-side
    /// treatment: address, dnsmasq with the lease for the NIC's MAC, rules; all gone afterwards.
    @Test func tapForAVM() throws {
        try Self.inHostNamespace { scratch in
            let network = try HostNetwork.prepare(Self.vethSettings(ports: ["2222:22"]), machine: "vm1", pool: Self.pool,
                                                  runtimeDirectory: scratch.runtime, forTap: true)
            #expect(network.dnsServer?.description == "10.231.0.1")
            let made = try Tool.run("ip", ["tuntap", "add", "dev", "vt-vm1", "mode", "tap"])
            #expect(made.status == 0, "\(made.stderr)")
            try network.attachTap("vt-vm1")
            let host = try RouteSocket.open()
            let tap = try #require(try host.link(named: "vt-vm1"))
            #expect(try host.addresses().contains { $0.interfaceIndex == tap.index && $0.address.description == "10.231.0.1/28" })
            let hosts = try String(contentsOfFile: "\(scratch.runtime)/network/vt-vm1.dhcp-hosts", encoding: .utf8)
            #expect(hosts == "\(network.machineMAC!),10.231.0.2,vm1\n")
            #expect(Self.nftElements() == ["subnets": 1, "ports": 1])
            network.tearDown()
            #expect(Self.nftElements() == Self.noElements)
            #expect(!FileManager.default.fileExists(atPath: "\(scratch.runtime)/network/vt-vm1.dhcp-hosts"))
            _ = try Tool.run("ip", ["tuntap", "del", "dev", "vt-vm1", "mode", "tap"])
        }
    }
}
