import Testing
@testable import Netlink

/// The bytes of requests and the parsing of replies, without root.
@Suite("netlink encoding")
struct EncodingTests {
    /// RTM_NEWLINK for a bridge, laid out by hand from <linux/rtnetlink.h>: what `ip link add br0
    /// type bridge` sends (apart from its own sequence number).
    @Test func bridgeRequestBytes() {
        let bytes = Requests.newLink(name: "br0", kind: "bridge").message(sequence: 7)
        let expected: [UInt8] = [
            56, 0, 0, 0,  16, 0,  0x05, 0x06,  7, 0, 0, 0,  0, 0, 0, 0,   // nlmsghdr: len 56, NEWLINK, REQ|ACK|EXCL|CREATE
            0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,            // ifinfomsg, all zero
            8, 0, 3, 0,  0x62, 0x72, 0x30, 0,                               // IFLA_IFNAME "br0\0"
            4 + 12, 0, 18, 0,                                               // IFLA_LINKINFO
            11, 0, 1, 0,  0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0, 0,        // IFLA_INFO_KIND "bridge\0" + pad
        ]
        #expect(bytes == expected)
    }

    /// An alternative name is RTM_NEWLINKPROP on the link's index with IFLA_PROP_LIST {
    /// IFLA_ALT_IFNAME }, as `ip link property add dev IF altname NAME` sends it.
    @Test func alternativeNameRequestBytes() {
        let bytes = Requests.addAlternativeName(index: 9, name: "ve-abcdefghijklm").message(sequence: 3)
        let expected: [UInt8] = [
            60, 0, 0, 0,  108, 0,  0x05, 0x06,  3, 0, 0, 0,  0, 0, 0, 0,  // nlmsghdr: len 60, NEWLINKPROP, REQ|ACK|EXCL|CREATE
            0, 0, 0, 0,  9, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,             // ifinfomsg, index 9
            4 + 24, 0, 52, 0x80,                                            // IFLA_PROP_LIST | NLA_F_NESTED
            21, 0, 53, 0,                                                   // IFLA_ALT_IFNAME "ve-abcdefghijklm\0" + pad
            0x76, 0x65, 0x2d, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0, 0, 0, 0,
        ]
        #expect(bytes == expected)
    }

    /// The veth request nests the peer (with its own ifinfomsg) inside LINKINFO/DATA/PEER, and
    /// every nest's length covers exactly its members.
    @Test func vethNesting() throws {
        let mac = try #require(MACAddress("02:11:22:33:44:55"))
        let peerMAC = try #require(MACAddress("0a:00:00:00:00:01"))
        let bytes = Requests.newVeth(name: "ve-a", mac: mac, peer: "host0", peerMAC: peerMAC, peerNamespace: .pid(4242))
            .message(sequence: 1)
        let message = try #require(NetlinkMessage.parse(bytes)?.first)
        #expect(message.type == 16)
        let top = Attributes.parse(message.payload.dropFirst(16))
        #expect(top.map(\.type) == [3, 1, 18])
        #expect(top[0].string == "ve-a")
        #expect(Array(top[1].payload) == mac.bytes)
        let info = top[2].nested
        #expect(info.map(\.type) == [1, 2])
        #expect(info[0].string == "veth")
        let peer = try #require(info[1].nested.first)
        #expect(peer.type == 1)
        // struct ifinfomsg first, then the peer's attributes.
        let peerAttributes = Attributes.parse(peer.payload.dropFirst(16))
        #expect(peerAttributes.map(\.type) == [3, 1, 19])
        #expect(peerAttributes[0].string == "host0")
        #expect(Array(peerAttributes[1].payload) == peerMAC.bytes)
        #expect(peerAttributes[2].uint32 == 4242)
    }

    @Test func addressAndRouteRequests() throws {
        let address = try #require(InterfaceAddress("192.168.77.2/28"))
        let bytes = Requests.newAddress(address, index: 5, noDAD: true).message(sequence: 2)
        let message = try #require(NetlinkMessage.parse(bytes)?.first)
        let header = Array(message.payload.prefix(8))
        #expect(header[0] == 2 && header[1] == 28)          // AF_INET, /28
        #expect(header.readNative(UInt32.self, at: 4) == 5)
        let attributes = Attributes.parse(message.payload.dropFirst(8))
        #expect(attributes.map(\.type) == [2, 1])           // IFA_LOCAL, IFA_ADDRESS; no NODAD for IPv4
        #expect(Array(attributes[0].payload) == [192, 168, 77, 2])

        let gateway = try #require(IPAddress("192.168.77.1"))
        let route = Requests.newRoute(destination: nil, gateway: gateway, index: 5, family: 2).message(sequence: 3)
        let routeMessage = try #require(NetlinkMessage.parse(route)?.first)
        let rtmsg = Array(routeMessage.payload.prefix(12))
        #expect(rtmsg[0] == 2 && rtmsg[1] == 0 && rtmsg[4] == 254 && rtmsg[6] == 0 && rtmsg[7] == 1)
        let routeAttributes = Attributes.parse(routeMessage.payload.dropFirst(12))
        #expect(routeAttributes.map(\.type) == [5, 4])
        #expect(Array(routeAttributes[0].payload) == [192, 168, 77, 1])
    }

    @Test func addressText() throws {
        #expect(IPAddress("10.0.0.1")?.description == "10.0.0.1")
        #expect(IPAddress("fe80::1")?.description == "fe80::1")
        #expect(IPAddress("fe80::1")?.networkBytes.count == 16)
        #expect(IPAddress("10.0.0.256") == nil)
        #expect(IPAddress("host0") == nil)
        #expect(InterfaceAddress("10.0.0.1/33") == nil)
        #expect(InterfaceAddress("fd00::1/64")?.prefixLength == 64)
        #expect(MACAddress("02:AB:cd:00:00:ff")?.description == "02:ab:cd:00:00:ff")
        #expect(MACAddress("02:ab:cd:00:00") == nil)
        #expect(MACAddress("02:ab:cd:00:00:zz") == nil)
    }

    /// An NLMSG_ERROR with extended-ack TLVs: errno and the kernel's text are both read.
    @Test func errorReplyWithKernelMessage() throws {
        var reply: [UInt8] = []
        let text = Array("Unknown device type".utf8) + [0]
        let attributeLength = 4 + text.count
        let total = 16 + 4 + 16 + ((attributeLength + 3) & ~3)
        reply.appendNative(UInt32(total)); reply.appendNative(UInt16(2)); reply.appendNative(UInt16(0x300))
        reply.appendNative(UInt32(9)); reply.appendNative(UInt32(0))
        reply.appendNative(Int32(-95))                     // -EOPNOTSUPP
        reply += [UInt8](repeating: 0, count: 16)          // the capped echo of our header
        reply.appendNative(UInt16(attributeLength)); reply.appendNative(UInt16(1))
        reply += text
        reply.padTo4()
        let message = try #require(NetlinkMessage.parse(reply)?.first)
        let (code, kernelText) = try #require(message.errorReply)
        #expect(code == 95)
        #expect(kernelText == "Unknown device type")
        let error = NetlinkError(operation: "create ipvlan on eth0", link: "iv-eth0", errno: code, kernelMessage: kernelText)
        #expect(error.description == "cannot create ipvlan on eth0 (iv-eth0): Operation not supported (Unknown device type)")
    }

    /// Truncated or lying lengths are rejected, never read past.
    @Test func malformedReplies() {
        #expect(NetlinkMessage.parse([200, 0, 0, 0] + [UInt8](repeating: 0, count: 12)) == nil)
        #expect(NetlinkMessage.parse([3, 0, 0, 0] + [UInt8](repeating: 0, count: 12)) == nil)
        #expect(Attributes.parse([0xff, 0xff, 1, 0, 1, 2][...]).isEmpty)
    }
}
