import Netlink

/// Interface names as nspawn makes them (src/nspawn/nspawn-network.c, systemd 250 and later):
/// "ve-MACHINE", "vb-MACHINE", "vz-ZONE", "mv-IF", "iv-IF", shortened past 15 bytes.
public enum InterfaceNames {
    /// IFNAMSIZ less the terminating NUL.
    public static let maximumLength = 15

    /// nspawn's SHORTEN_IFNAME_HASH_KEY.
    static let shortenKey: [UInt8] = [0xe1, 0x90, 0xa4, 0x04, 0xa8, 0xef, 0x4b, 0x51, 0x8c, 0xcc, 0xc3, 0x3a, 0x9f, 0x11, 0xfc, 0xa2]

    /// nspawn's shorten_ifname with the NAMING_NSPAWN_LONG_HASH scheme: a name past 15 bytes keeps
    /// its first 11 bytes and gets 4 url-safe base64 characters of the low 24 bits of
    /// siphash24(name), so two long machine names with one prefix still get distinct links.
    public static func shortened(_ name: String) -> String {
        let bytes = Array(name.utf8)
        guard bytes.count > maximumLength else { return name }
        let h = SipHash24.hash(bytes, key: shortenKey)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        let tail = [h >> 18, h >> 12, h >> 6, h].map { alphabet[Int($0 & 63)] }
        return String(decoding: bytes.prefix(maximumLength - 4) + tail, as: UTF8.self)
    }

    /// Host side of --network-veth ("ve-") or of --network-bridge/--network-zone ("vb-").
    public static func hostVeth(machine: String, bridged: Bool) -> String {
        shortened((bridged ? "vb-" : "ve-") + machine)
    }

    /// The whole name when `hostVeth` had to shorten it: nspawn gives it to the link as an
    /// alternative name, so `ip link show ve-LONG-MACHINE-NAME` finds it.
    public static func hostVethAlternative(machine: String, bridged: Bool) -> String? {
        let whole = (bridged ? "vb-" : "ve-") + machine
        return whole.utf8.count > maximumLength ? whole : nil
    }

    public static func zoneBridge(_ zone: String) -> String { "vz-" + zone }

    /// systemd's ifname_valid: 1-15 bytes, no '/', ':', '%', white space or control
    /// characters, not "." or "..", and not all digits (it would read as an interface index).
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength, name != ".", name != ".." else { return false }
        if bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return false }
        return bytes.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "%") }
    }
}

/// Stable MAC addresses from the machine name, as nspawn's generate_mac: siphash24 of the host's
/// machine ID (16 bytes), the machine name and, for the second and later links of a kind, the
/// link's index (little-endian u64), keyed per kind; six bytes of the hash, marked locally
/// administered and unicast.
public enum StableMAC {
    public enum Kind: Sendable {
        case vethHost, vethContainer, extraHost, extraContainer, macvlan

        var key: [UInt8] {
            switch self {
            case .vethHost: [0x1a, 0x37, 0x6f, 0xc7, 0x46, 0xec, 0x45, 0x0b, 0xad, 0xa3, 0xd5, 0x31, 0x06, 0x60, 0x5d, 0xb1]
            case .vethContainer: [0xc3, 0xc4, 0xf9, 0x19, 0xb5, 0x57, 0xb2, 0x1c, 0xe6, 0xcf, 0x14, 0x27, 0x03, 0x9c, 0xee, 0xa2]
            case .extraHost: [0x48, 0xc7, 0xf6, 0xb7, 0xea, 0x9d, 0x4c, 0x9e, 0xb7, 0x28, 0xd4, 0xde, 0x91, 0xd5, 0xbf, 0x66]
            case .extraContainer: [0xaf, 0x50, 0x17, 0x61, 0xce, 0xf9, 0x4d, 0x35, 0x84, 0x0d, 0x2b, 0x20, 0x54, 0xbe, 0xce, 0x59]
            case .macvlan: [0x00, 0x13, 0x6d, 0xbc, 0x66, 0x83, 0x44, 0x81, 0xbb, 0x0c, 0xf9, 0x51, 0x1f, 0x24, 0xa6, 0x6f]
            }
        }
    }

    public static func generate(machine: String, kind: Kind, index: UInt64 = 0, machineID: [UInt8]) -> MACAddress {
        var input = machineID + Array(machine.utf8)
        if index > 0 { withUnsafeBytes(of: index.littleEndian) { input += $0 } }
        let h = SipHash24.hash(input, key: kind.key).littleEndian
        var bytes = withUnsafeBytes(of: h) { Array($0.prefix(6)) }
        bytes[0] = (bytes[0] & 0xfe) | 0x02  // ether_addr_mark_random: unicast, locally administered
        return MACAddress(bytes: bytes)!
    }
}
