import Foundation
import Netlink

/// Picks a free IPv4 /28 for a veth or zone from a private pool, as networkd's address pools do
/// for its 80-container-ve/-vz .network files: the first /28 that overlaps no route of the host
/// and no subnet another machine of imagectl holds.
public struct AddressPool: Equatable, Sendable, CustomStringConvertible {
    public var network: InterfaceAddress

    /// The pool when $IMAGECTL_NETWORK_POOL does not name one: networkd's first pool for
    /// containers is 192.168.0.0/16; 10.0.0.0/8 and 172.16.0.0/12 are too often a host's own.
    public static let defaultPool = AddressPool(network: InterfaceAddress(.v4(0xc0a8_0000), prefixLength: 16))

    public init(network: InterfaceAddress) { self.network = network }

    /// "ADDRESS/PREFIX" of an IPv4 private range (RFC 1918) with a prefix of at most /28.
    public init(parsing text: String) throws {
        guard let network = InterfaceAddress(text), case .v4(let value) = network.address, network.prefixLength <= 28 else {
            throw NetworkSettingsError("address pool '\(text)' is not an IPv4 network of /28 or larger")
        }
        let isPrivate = [(0x0a00_0000 as UInt32, 8), (0xac10_0000, 12), (0xc0a8_0000, 16)].contains { base, length in
            network.prefixLength >= length && Subnet.mask(length) & value == base
        }
        guard isPrivate else { throw NetworkSettingsError("address pool '\(text)' is not a private (RFC 1918) range") }
        self.network = InterfaceAddress(.v4(value & Subnet.mask(Int(network.prefixLength))), prefixLength: network.prefixLength)
    }

    /// $IMAGECTL_NETWORK_POOL or the default.
    public static func configured(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AddressPool {
        guard let text = environment["IMAGECTL_NETWORK_POOL"], !text.isEmpty else { return defaultPool }
        return try AddressPool(parsing: text)
    }

    public var description: String { network.description }

    /// The first /28 of the pool that overlaps none of `taken` (routes' destinations, addresses'
    /// networks, other machines' subnets). A default route (/0) does not count: it would take all.
    public func allocate(avoiding taken: [InterfaceAddress]) -> Subnet? {
        guard case .v4(let base) = network.address else { return nil }
        let blocked = taken.compactMap { entry -> (UInt32, Int)? in
            guard case .v4(let value) = entry.address, entry.prefixLength > 0 else { return nil }
            let length = Int(entry.prefixLength)
            return (value & Subnet.mask(length), length)
        }
        let count = UInt32(1) << (28 - UInt32(network.prefixLength))
        for i in 0..<count {
            let candidate = base + i << 4
            let overlaps = blocked.contains { start, length in
                let shorter = min(length, 28)
                return candidate & Subnet.mask(shorter) == start & Subnet.mask(shorter)
            }
            if !overlaps { return Subnet(base: candidate) }
        }
        return nil
    }
}

/// A /28 handed to one veth or zone: .1 is the host side (gateway, DHCP and DNS server), the
/// first machine gets .2, DHCP hands out .3 to .14 to others (a zone's members).
public struct Subnet: Equatable, Sendable, Codable, CustomStringConvertible {
    public var base: UInt32

    public init(base: UInt32) { self.base = base & Subnet.mask(28) }

    static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << (32 - UInt32(length)) }

    public var network: InterfaceAddress { InterfaceAddress(.v4(base), prefixLength: 28) }
    public var hostAddress: InterfaceAddress { InterfaceAddress(.v4(base + 1), prefixLength: 28) }
    public func address(_ n: UInt32) -> IPAddress { .v4(base + n) }
    public var gateway: IPAddress { .v4(base + 1) }
    public var netmask: String { "255.255.255.240" }
    public var description: String { network.description }
}
