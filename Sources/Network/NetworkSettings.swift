/// What a machine asked for in networking: nspawn's networking options and the .nspawn
/// [Network] keys, as a value. Every setting here implies a private network namespace.
public struct NetworkSettings: Equatable, Sendable {
    /// -n/--network-veth, VirtualEthernet=yes: "ve-MACHINE" on the host, "host0" inside.
    public var veth = false
    /// --network-veth-extra=HOST[:CONTAINER], VirtualEthernetExtra=.
    public var vethExtra: [InterfacePair] = []
    /// --network-bridge=BRIDGE, Bridge=: the host side is "vb-MACHINE", joined to BRIDGE.
    public var bridge: String?
    /// --network-zone=NAME, Zone=: the host side "vb-MACHINE" joins "vz-NAME", made on first use.
    public var zone: String?
    /// --network-interface=IF[:NAME], Interface=: host links moved in (and back out at the end).
    public var interfaces: [InterfacePair] = []
    /// --network-macvlan=IF[:NAME], MACVLAN=: a macvlan on IF, "mv-IF" inside unless named.
    public var macvlan: [InterfacePair] = []
    /// --network-ipvlan=IF[:NAME], IPVLAN=: an ipvlan on IF, "iv-IF" inside unless named.
    public var ipvlan: [InterfacePair] = []
    /// --network-namespace-path=PATH: the container joins that namespace instead.
    public var namespacePath: String?
    /// -p/--port=, Port=.
    public var ports: [PortForward] = []

    public init() {}

    /// True when a veth with a host side exists (-n, bridge or zone): the host side gets
    /// addresses, DHCP and DNS unless it is bridged (the bridge's owner addresses it).
    public var hasVeth: Bool { veth || bridge != nil || zone != nil }

    /// Links or ports the host side makes (everything but --network-namespace-path=).
    public var hasHostSide: Bool {
        hasVeth || !vethExtra.isEmpty || !interfaces.isEmpty || !macvlan.isEmpty || !ipvlan.isEmpty || !ports.isEmpty
    }

    /// Anything asked for at all: the container gets a network namespace of its own, or joins
    /// the one at `namespacePath`.
    public var isEnabled: Bool {
        hasVeth || !vethExtra.isEmpty || !interfaces.isEmpty || !macvlan.isEmpty || !ipvlan.isEmpty
            || namespacePath != nil || !ports.isEmpty
    }

    /// Combinations nspawn refuses, checked once every option was read.
    public func validate() throws {
        if bridge != nil && zone != nil {
            throw NetworkSettingsError("--network-bridge= and --network-zone= are mutually exclusive")
        }
        if namespacePath != nil && (hasVeth || !vethExtra.isEmpty || !interfaces.isEmpty || !macvlan.isEmpty || !ipvlan.isEmpty) {
            throw NetworkSettingsError("--network-namespace-path= cannot be combined with other network options")
        }
        if !ports.isEmpty && !hasVeth {
            throw NetworkSettingsError("--port= needs a virtual Ethernet link (--network-veth, --network-bridge= or --network-zone=)")
        }
        var seen = Set<String>()
        for port in ports where !seen.insert("\(port.proto):\(port.hostPort)").inserted {
            throw NetworkSettingsError("port \(port.proto):\(port.hostPort) forwarded twice")
        }
    }
}

/// A host interface name and the name it has in the container.
public struct InterfacePair: Equatable, Sendable {
    public var host: String
    public var container: String

    public init(host: String, container: String) {
        self.host = host
        self.container = container
    }
}

public struct PortForward: Equatable, Sendable, CustomStringConvertible {
    public enum Proto: String, Sendable { case tcp, udp }
    public var proto: Proto
    public var hostPort: UInt16
    public var containerPort: UInt16

    public init(proto: Proto, hostPort: UInt16, containerPort: UInt16) {
        self.proto = proto
        self.hostPort = hostPort
        self.containerPort = containerPort
    }

    public var description: String { "\(proto):\(hostPort):\(containerPort)" }
}

/// Bad network input: one line saying what is wrong with which value.
public struct NetworkSettingsError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Parsing of the option values (the same text in the command line and in .nspawn files).
public enum NetworkOptionParser {
    /// An interface name as given by the user.
    public static func interfaceName(_ name: String, option: String) throws -> String {
        guard !name.isEmpty else { throw NetworkSettingsError("\(option): missing interface name") }
        guard InterfaceNames.isValid(name) else {
            if name.utf8.count > InterfaceNames.maximumLength {
                throw NetworkSettingsError("\(option): interface name '\(name)' is too long (at most \(InterfaceNames.maximumLength) bytes)")
            }
            throw NetworkSettingsError("\(option): '\(name)' is not a valid interface name")
        }
        return name
    }

    /// --network-veth-extra=HOST[:CONTAINER]: the container side defaults to the host's name.
    public static func vethExtra(_ value: String) throws -> InterfacePair {
        let option = "--network-veth-extra"
        let parts = value.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let host = try interfaceName(parts[0], option: option)
        let container = parts.count > 1 ? try interfaceName(parts[1], option: option) : host
        return InterfacePair(host: host, container: container)
    }

    /// --network-interface=, --network-macvlan=, --network-ipvlan=: IF[:NAME]; the default name
    /// inside is IF for a moved interface, or `prefix` + IF (shortened as nspawn) for macvlan/ipvlan.
    public static func hostInterface(_ value: String, option: String, prefix: String = "") throws -> InterfacePair {
        let parts = value.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let host = try interfaceName(parts[0], option: option)
        let container = parts.count > 1 ? try interfaceName(parts[1], option: option)
            : InterfaceNames.shortened(prefix + host)
        return InterfacePair(host: host, container: container)
    }

    /// --network-bridge=: an existing bridge's name.
    public static func bridge(_ value: String) throws -> String {
        try interfaceName(value, option: "--network-bridge")
    }

    /// --network-zone=NAME: "vz-NAME" must be a valid interface name.
    public static func zone(_ value: String) throws -> String {
        guard !value.isEmpty else { throw NetworkSettingsError("--network-zone: missing zone name") }
        let bridge = InterfaceNames.zoneBridge(value)
        guard InterfaceNames.isValid(bridge) else {
            if bridge.utf8.count > InterfaceNames.maximumLength {
                throw NetworkSettingsError("--network-zone: zone name '\(value)' is too long (at most \(InterfaceNames.maximumLength - 3) bytes)")
            }
            throw NetworkSettingsError("--network-zone: '\(value)' is not a valid zone name ('vz-\(value)' is not an interface name)")
        }
        return value
    }

    /// -p/--port=[tcp|udp:]HOSTPORT[:CONTAINERPORT], ports 1-65535.
    public static func port(_ value: String) throws -> PortForward {
        var rest = Substring(value)
        var proto = PortForward.Proto.tcp
        if rest.hasPrefix("tcp:") { rest = rest.dropFirst(4) }
        else if rest.hasPrefix("udp:") { proto = .udp; rest = rest.dropFirst(4) }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2 else { throw NetworkSettingsError("--port: '\(value)' is not [tcp|udp:]HOSTPORT[:CONTAINERPORT]") }
        func number(_ text: Substring) throws -> UInt16 {
            guard !text.isEmpty, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber) else {
                throw NetworkSettingsError("--port: '\(value)' is not [tcp|udp:]HOSTPORT[:CONTAINERPORT]")
            }
            guard let n = Int(text), n >= 1, n <= 65535 else {
                throw NetworkSettingsError("--port: port \(text) is out of range (1-65535)")
            }
            return UInt16(n)
        }
        let host = try number(parts[0])
        let container = parts.count == 2 ? try number(parts[1]) : host
        return PortForward(proto: proto, hostPort: host, containerPort: container)
    }

    /// --network-namespace-path=: an absolute path.
    public static func namespacePath(_ value: String) throws -> String {
        guard value.hasPrefix("/") else { throw NetworkSettingsError("--network-namespace-path: '\(value)' is not an absolute path") }
        return value
    }
}
