/// An Ethernet (MAC) address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Nil unless `bytes` has six entries.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// "aa:bb:cc:dd:ee:ff" (either case); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    public var description: String {
        bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: ":")
    }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6([UInt8])

    /// Dotted quad or RFC 4291 text; nil otherwise.
    public init?(_ text: String) {
        if let bytes = AddressText.parse(text, family: .v4) {
            self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        } else if let bytes = AddressText.parse(text, family: .v6) {
            self = .v6(bytes)
        } else {
            return nil
        }
    }

    /// From a netlink attribute payload (4 or 16 bytes in network order).
    init?(networkBytes: [UInt8]) {
        switch networkBytes.count {
        case 4: self = .v4(networkBytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16: self = .v6(networkBytes)
        default: return nil
        }
    }

    /// Network byte order, as netlink carries addresses.
    public var networkBytes: [UInt8] {
        switch self {
        case .v4(let value): [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
        case .v6(let bytes): bytes
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }

    var family: UInt8 { isIPv4 ? RTNL.familyIPv4 : RTNL.familyIPv6 }
    var maximumPrefixLength: UInt8 { isIPv4 ? 32 : 128 }

    public var description: String {
        switch self {
        case .v4(let value): "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
        case .v6(let bytes): AddressText.format(bytes)
        }
    }
}

/// An address with its prefix length, as on an interface ("10.0.0.1/28") or as a network.
public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: UInt8

    public init(_ address: IPAddress, prefixLength: UInt8) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// "ADDRESS/PREFIX"; nil when either part is invalid.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let prefix = UInt8(parts[1]),
              prefix <= address.maximumPrefixLength else { return nil }
        self.init(address, prefixLength: prefix)
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
