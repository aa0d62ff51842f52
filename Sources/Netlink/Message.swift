/// rtnetlink messages as bytes: building requests and parsing replies, with no system calls, so
/// that the encoding is tested without root.
///
/// A message (host byte order throughout, everything padded to 4 bytes):
/// ```
///  +--------------------------------+  struct nlmsghdr (16 bytes)
///  | u32 length | u16 type | u16 flags | u32 sequence | u32 port id |
///  +--------------------------------+
///  | family header                  |  ifinfomsg (16) / ifaddrmsg (8) / rtmsg (12)
///  +--------------------------------+
///  | attribute: u16 length | u16 type | payload | pad to 4 |   (struct rtattr), repeated;
///  | a nested attribute's payload is itself a list of attributes |
///  +--------------------------------+
/// ```
struct NetlinkRequest: Equatable {
    private(set) var bytes: [UInt8]

    /// Starts a message of `type` with `flags` (NLM_F_REQUEST is always added) and the family
    /// header bytes.
    init(type: UInt16, flags: UInt16, header: [UInt8]) {
        bytes = []
        bytes.appendNative(UInt32(0))  // length, filled in by `message(sequence:)`
        bytes.appendNative(type)
        bytes.appendNative(flags | RTNL.request)
        bytes.appendNative(UInt32(0))  // sequence
        bytes.appendNative(UInt32(0))  // port id: 0 is the kernel
        bytes += header
        bytes.padTo4()
    }

    mutating func append(_ type: UInt16, _ payload: [UInt8]) {
        bytes.appendNative(UInt16(4 + payload.count))
        bytes.appendNative(type)
        bytes += payload
        bytes.padTo4()
    }

    /// A NUL-terminated string, as the kernel's nla_strscpy expects for names and kinds.
    mutating func append(_ type: UInt16, string: String) {
        append(type, Array(string.utf8) + [0])
    }

    mutating func append(_ type: UInt16, uint32 value: UInt32) {
        var payload: [UInt8] = []
        payload.appendNative(value)
        append(type, payload)
    }

    mutating func append(_ type: UInt16, uint16 value: UInt16) {
        var payload: [UInt8] = []
        payload.appendNative(value)
        append(type, payload)
    }

    /// A nested attribute: `body` appends its members (and may nest further). NLA_F_NESTED is not
    /// set, as iproute2 and systemd do not set it for IFLA_LINKINFO either.
    mutating func nest(_ type: UInt16, _ body: (inout NetlinkRequest) -> Void) {
        let start = bytes.count
        bytes.appendNative(UInt16(0))
        bytes.appendNative(type)
        body(&self)
        let length = UInt16(bytes.count - start)
        bytes.replaceNative(at: start, with: length)
    }

    /// Raw bytes (already aligned) appended inside the current nest: VETH_INFO_PEER carries a
    /// whole struct ifinfomsg before the peer's attributes.
    mutating func appendRaw(_ raw: [UInt8]) {
        bytes += raw
        bytes.padTo4()
    }

    /// The finished message with its length and sequence number.
    func message(sequence: UInt32) -> [UInt8] {
        var out = bytes
        out.replaceNative(at: 0, with: UInt32(out.count))
        out.replaceNative(at: 8, with: sequence)
        return out
    }
}

/// Family headers.
enum FamilyHeader {
    /// struct ifinfomsg: u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change.
    static func link(index: Int32 = 0, flags: UInt32 = 0, change: UInt32 = 0, family: UInt8 = RTNL.familyUnspecified) -> [UInt8] {
        var b: [UInt8] = [family, 0]
        b.appendNative(UInt16(0))
        b.appendNative(index)
        b.appendNative(flags)
        b.appendNative(change)
        return b
    }

    /// struct ifaddrmsg: u8 family, u8 prefix length, u8 flags, u8 scope, u32 index.
    static func address(family: UInt8, prefixLength: UInt8 = 0, flags: UInt8 = 0, scope: UInt8 = 0, index: Int32 = 0) -> [UInt8] {
        var b: [UInt8] = [family, prefixLength, flags, scope]
        b.appendNative(UInt32(bitPattern: index))
        return b
    }

    /// struct rtmsg: u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags.
    static func route(family: UInt8, destinationLength: UInt8 = 0, table: UInt8 = 0, protocol: UInt8 = 0,
                      scope: UInt8 = 0, type: UInt8 = 0) -> [UInt8] {
        var b: [UInt8] = [family, destinationLength, 0, 0, table, `protocol`, scope, type]
        b.appendNative(UInt32(0))
        return b
    }
}

/// One message of a reply.
struct NetlinkMessage {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    /// Everything after the 16-byte header.
    var payload: ArraySlice<UInt8>

    /// Splits a datagram into its messages; nil when a length field is impossible.
    static func parse(_ datagram: [UInt8]) -> [NetlinkMessage]? {
        var out: [NetlinkMessage] = []
        var offset = 0
        while offset + 16 <= datagram.count {
            let length = Int(datagram.readNative(UInt32.self, at: offset))
            guard length >= 16, offset + length <= datagram.count else { return nil }
            out.append(NetlinkMessage(
                type: datagram.readNative(UInt16.self, at: offset + 4),
                flags: datagram.readNative(UInt16.self, at: offset + 6),
                sequence: datagram.readNative(UInt32.self, at: offset + 8),
                payload: datagram[(offset + 16)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        return out
    }

    /// NLMSG_ERROR: the errno (0 for an acknowledgement, positive here) and, with NETLINK_EXT_ACK,
    /// the kernel's own message (NLMSGERR_ATTR_MSG) when it gave one.
    var errorReply: (errno: Int32, message: String?)? {
        guard type == RTNL.error, payload.count >= 4 else { return nil }
        let bytes = Array(payload)
        let code = -bytes.readNative(Int32.self, at: 0)
        var message: String?
        // NLM_F_ACK_TLVS (0x200): attributes follow the echoed request, which NETLINK_CAP_ACK
        // (NLM_F_CAPPED, 0x100) cuts to its 16-byte header.
        if flags & 0x200 != 0 {
            var skip = 4 + 16
            if flags & 0x100 == 0, bytes.count >= 8 { skip = 4 + Int(bytes.readNative(UInt32.self, at: 4)) }
            if skip <= bytes.count {
                for attribute in Attributes.parse(bytes[skip...]) where attribute.type == 1 {  // NLMSGERR_ATTR_MSG
                    message = attribute.string
                }
            }
        }
        return (code, message)
    }
}

/// A parsed attribute.
struct Attribute {
    var type: UInt16
    var payload: ArraySlice<UInt8>

    var string: String {
        let end = payload.firstIndex(of: 0) ?? payload.endIndex
        return String(decoding: payload[payload.startIndex..<end], as: UTF8.self)
    }

    var uint32: UInt32? { payload.count >= 4 ? Array(payload).readNative(UInt32.self, at: 0) : nil }

    var nested: [Attribute] { Attributes.parse(payload) }
}

enum Attributes {
    /// The attributes in `bytes`; stops at the first malformed one.
    static func parse(_ bytes: ArraySlice<UInt8>) -> [Attribute] {
        var out: [Attribute] = []
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8)
            // NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags in the type's top bits.
            let type = (UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8) & 0x3fff
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            out.append(Attribute(type: type, payload: bytes[(offset + 4)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        return out
    }
}

extension Array where Element == UInt8 {
    /// Host byte order: netlink is always in the byte order of the running kernel.
    mutating func appendNative<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }

    mutating func replaceNative<T: FixedWidthInteger>(at offset: Int, with value: T) {
        Swift.withUnsafeBytes(of: value) { raw in
            for (i, byte) in raw.enumerated() { self[offset + i] = byte }
        }
    }

    func readNative<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value = T.zero
        Swift.withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<raw.count { raw[i] = self[offset + i] }
        }
        return value
    }

    mutating func padTo4() {
        while count % 4 != 0 { append(0) }
    }
}
