import Foundation
import Netlink

/// One dnsmasq (package dnsmasq-base) per veth or zone bridge: DHCPv4 with static leases by MAC
/// and DNS for the machines' names, listening only on that link's host-side address. LXC,
/// libvirt and Incus run it the same way. imagectl starts it as a daemon (its start-up errors
/// come back as its exit status) and stops it by the PID in its pid file.
public struct DnsmasqConfiguration: Equatable, Sendable {
    public var interface: String
    public var subnet: Subnet
    /// Where the pid, lease, hosts and log files go.
    public var stateDirectory: String

    public var pidFile: String { "\(stateDirectory)/\(interface).dnsmasq.pid" }
    public var leaseFile: String { "\(stateDirectory)/\(interface).leases" }
    /// dhcp-host lines ("MAC,ADDRESS,NAME"), re-read on SIGHUP: a zone's members come and go.
    public var dhcpHostsFile: String { "\(stateDirectory)/\(interface).dhcp-hosts" }
    /// /etc/hosts-style lines, so that a machine's name resolves before it asked for a lease
    /// (a payload that is not booted has no DHCP client).
    public var hostsFile: String { "\(stateDirectory)/\(interface).hosts" }

    public init(interface: String, subnet: Subnet, stateDirectory: String) {
        self.interface = interface
        self.subnet = subnet
        self.stateDirectory = stateDirectory
    }

    /// dnsmasq's arguments. No configuration file of the host is read (--conf-file=/dev/null);
    /// upstream DNS comes from the host's /etc/resolv.conf as for any resolver; only the link's
    /// own address is bound, so nothing else on the host is answered.
    public func arguments(user: String?) -> [String] {
        var args = [
            "--conf-file=/dev/null",
            "--pid-file=\(pidFile)",
            "--interface=\(interface)",
            "--except-interface=lo",
            "--bind-interfaces",
            "--listen-address=\(subnet.gateway)",
            "--dhcp-range=\(subnet.address(2)),\(subnet.address(14)),\(subnet.netmask),1h",
            "--dhcp-hostsfile=\(dhcpHostsFile)",
            "--addn-hosts=\(hostsFile)",
            "--dhcp-leasefile=\(leaseFile)",
            "--dhcp-authoritative",
            "--domain-needed",
            // The machines' names, not the host's /etc/hosts.
            "--no-hosts",
            "--quiet-dhcp",
        ]
        if let user { args.append("--user=\(user)") }
        return args
    }

    public static func hostsLines(_ members: [Member]) -> (dhcp: String, hosts: String) {
        (members.map { "\($0.mac),\($0.address),\($0.name)\n" }.joined(),
         members.map { "\($0.address) \($0.name)\n" }.joined())
    }

    public struct Member: Codable, Equatable, Sendable {
        public var name: String
        public var mac: String
        public var address: String
    }
}

enum Dnsmasq {
    static var binary: String? {
        ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// dnsmasq drops to its own user when the package made one, else to nobody.
    static var user: String? { HostProcess.userExists("dnsmasq") ? "dnsmasq" : "nobody" }

    /// Writes the member files and starts the daemon; returns its PID.
    static func start(_ config: DnsmasqConfiguration, members: [DnsmasqConfiguration.Member]) throws -> Int32 {
        guard let binary else { throw NetworkSetupError.missingTool("dnsmasq", package: "dnsmasq-base") }
        try writeMembers(config, members)
        let result = try HostProcess.run(binary, config.arguments(user: user))
        guard result.status == 0 else {
            throw NetworkSetupError.step("start dnsmasq on \(config.interface)", result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        guard let pid = readPID(config.pidFile) else { throw NetworkSetupError.step("start dnsmasq on \(config.interface)", "no pid file") }
        return pid
    }

    static func writeMembers(_ config: DnsmasqConfiguration, _ members: [DnsmasqConfiguration.Member]) throws {
        let (dhcp, hosts) = DnsmasqConfiguration.hostsLines(members)
        try dhcp.write(toFile: config.dhcpHostsFile, atomically: true, encoding: .utf8)
        try hosts.write(toFile: config.hostsFile, atomically: true, encoding: .utf8)
    }

    static func readPID(_ path: String) -> Int32? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Stops the dnsmasq of `config` if its pid file names a live dnsmasq, and removes its files.
    static func stop(_ config: DnsmasqConfiguration) {
        if let pid = readPID(config.pidFile), HostProcess.commandName(of: pid) == "dnsmasq" {
            HostProcess.terminate(pid)
        }
        for file in [config.pidFile, config.leaseFile, config.dhcpHostsFile, config.hostsFile] {
            try? FileManager.default.removeItem(atPath: file)
        }
    }
}
