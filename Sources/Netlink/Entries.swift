/// A network interface as RTM_GETLINK reports it.
public struct Link: Hashable, Sendable {
    public var index: Int32
    public var name: String
    public var mac: MACAddress?
    public var isUp: Bool
    /// The bridge (or bond) it is enslaved to, by index.
    public var master: Int32?
    /// IFLA_INFO_KIND: "veth", "bridge", "macvlan" ...; nil for lo and physical devices.
    public var kind: String?
    public var mtu: UInt32?

    init?(_ message: NetlinkMessage) {
        guard message.type == RTNL.newLink, message.payload.count >= 16 else { return nil }
        let header = Array(message.payload.prefix(16))
        index = header.readNative(Int32.self, at: 4)
        isUp = header.readNative(UInt32.self, at: 8) & RTNL.up != 0
        name = ""
        for attribute in Attributes.parse(message.payload.dropFirst(16)) {
            switch attribute.type {
            case RTNL.iflaIfname: name = attribute.string
            case RTNL.iflaAddress: mac = MACAddress(bytes: Array(attribute.payload))
            case RTNL.iflaMaster: master = attribute.uint32.map { Int32(bitPattern: $0) }
            case RTNL.iflaMTU: mtu = attribute.uint32
            case RTNL.iflaLinkInfo:
                kind = attribute.nested.first { $0.type == RTNL.infoKind }?.string
            default: break
            }
        }
    }
}

/// An address on an interface, as RTM_GETADDR reports it.
public struct AddressEntry: Hashable, Sendable {
    public var interfaceIndex: Int32
    public var address: InterfaceAddress
    /// RT_SCOPE_*: 0 global, 253 link, 254 host.
    public var scope: UInt8

    init?(_ message: NetlinkMessage) {
        guard message.type == RTNL.newAddress, message.payload.count >= 8 else { return nil }
        let header = Array(message.payload.prefix(8))
        interfaceIndex = Int32(bitPattern: header.readNative(UInt32.self, at: 4))
        scope = header[3]
        var local: IPAddress?
        var peer: IPAddress?
        for attribute in Attributes.parse(message.payload.dropFirst(8)) {
            switch attribute.type {
            case RTNL.ifaLocal: local = IPAddress(networkBytes: Array(attribute.payload))
            case RTNL.ifaAddress: peer = IPAddress(networkBytes: Array(attribute.payload))
            default: break
            }
        }
        // IFA_LOCAL is the interface's own address; IPv6 sends only IFA_ADDRESS.
        guard let address = local ?? peer else { return nil }
        self.address = InterfaceAddress(address, prefixLength: header[1])
    }
}

/// A route of the main table, as RTM_GETROUTE reports it.
public struct Route: Hashable, Sendable {
    /// Nil for a default route.
    public var destination: InterfaceAddress?
    public var gateway: IPAddress?
    public var outputInterface: Int32?
    public var table: UInt32
    public var scope: UInt8

    init?(_ message: NetlinkMessage) {
        guard message.type == RTNL.newRoute, message.payload.count >= 12 else { return nil }
        let header = Array(message.payload.prefix(12))
        let prefix = header[1]
        table = UInt32(header[4])
        scope = header[6]
        var destination: IPAddress?
        for attribute in Attributes.parse(message.payload.dropFirst(12)) {
            switch attribute.type {
            case RTNL.rtaDestination: destination = IPAddress(networkBytes: Array(attribute.payload))
            case RTNL.rtaGateway: gateway = IPAddress(networkBytes: Array(attribute.payload))
            case RTNL.rtaOutputInterface: outputInterface = attribute.uint32.map { Int32(bitPattern: $0) }
            case RTNL.rtaTable: table = attribute.uint32 ?? table
            default: break
            }
        }
        self.destination = destination.map { InterfaceAddress($0, prefixLength: prefix) }
    }
}
