/// The requests RouteSocket sends, as pure functions so that their bytes are tested without root.
enum Requests {
    static let createFlags = RTNL.create | RTNL.exclusive | RTNL.ack

    /// RTM_NEWLINK veth: IFLA_LINKINFO { KIND "veth", DATA { VETH_INFO_PEER { ifinfomsg, peer
    /// name, MAC, namespace } } }, the layout of iproute2's and nspawn's add_veth.
    static func newVeth(name: String, mac: MACAddress?, peer: String, peerMAC: MACAddress?, peerNamespace: NamespaceTarget?) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.newLink, flags: createFlags, header: FamilyHeader.link())
        r.append(RTNL.iflaIfname, string: name)
        if let mac { r.append(RTNL.iflaAddress, mac.bytes) }
        r.nest(RTNL.iflaLinkInfo) { info in
            info.append(RTNL.infoKind, string: "veth")
            info.nest(RTNL.infoData) { data in
                data.nest(RTNL.vethPeer) { peerInfo in
                    peerInfo.appendRaw(FamilyHeader.link())
                    peerInfo.append(RTNL.iflaIfname, string: peer)
                    if let peerMAC { peerInfo.append(RTNL.iflaAddress, peerMAC.bytes) }
                    peerNamespace?.append(to: &peerInfo)
                }
            }
        }
        return r
    }

    /// RTM_NEWLINK of a kind without data (bridge).
    static func newLink(name: String, kind: String) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.newLink, flags: createFlags, header: FamilyHeader.link())
        r.append(RTNL.iflaIfname, string: name)
        r.nest(RTNL.iflaLinkInfo) { $0.append(RTNL.infoKind, string: kind) }
        return r
    }

    /// RTM_NEWLINK macvlan (bridge mode, as nspawn) or ipvlan (L2) on `parent`, created directly
    /// in `namespace` when given.
    static func newVirtualLink(name: String, kind: String, parent: Int32, mac: MACAddress?, namespace: NamespaceTarget?) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.newLink, flags: createFlags, header: FamilyHeader.link())
        r.append(RTNL.iflaLink, uint32: UInt32(bitPattern: parent))
        r.append(RTNL.iflaIfname, string: name)
        if let mac { r.append(RTNL.iflaAddress, mac.bytes) }
        namespace?.append(to: &r)
        r.nest(RTNL.iflaLinkInfo) { info in
            info.append(RTNL.infoKind, string: kind)
            info.nest(RTNL.infoData) { data in
                if kind == "macvlan" { data.append(RTNL.macvlanMode, uint32: RTNL.macvlanModeBridge) }
                if kind == "ipvlan" { data.append(RTNL.ipvlanMode, uint16: RTNL.ipvlanModeL2) }
            }
        }
        return r
    }

    /// RTM_SETLINK by index with whatever `body` adds (flags, name, master, namespace).
    static func setLink(index: Int32, flags: UInt32 = 0, change: UInt32 = 0, _ body: (inout NetlinkRequest) -> Void = { _ in }) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.setLink, flags: RTNL.ack, header: FamilyHeader.link(index: index, flags: flags, change: change))
        body(&r)
        return r
    }

    /// RTM_NEWLINKPROP: IFLA_PROP_LIST { IFLA_ALT_IFNAME }, an alternative name (`ip link
    /// property add altname`), which may be longer than 15 bytes. The kernel parses this list
    /// strictly, so the nest carries NLA_F_NESTED.
    static func addAlternativeName(index: Int32, name: String) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.newLinkProperty, flags: createFlags, header: FamilyHeader.link(index: index))
        r.nest(RTNL.iflaPropertyList | RTNL.nestedFlag) { $0.append(RTNL.iflaAlternativeName, string: name) }
        return r
    }

    static func deleteLink(index: Int32) -> NetlinkRequest {
        NetlinkRequest(type: RTNL.deleteLink, flags: RTNL.ack, header: FamilyHeader.link(index: index))
    }

    /// RTM_GETLINK for one name (the kernel looks it up by IFLA_IFNAME when the index is 0).
    static func getLink(name: String) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.getLink, flags: 0, header: FamilyHeader.link())
        r.append(RTNL.iflaIfname, string: name)
        return r
    }

    static func dump(_ type: UInt16, header: [UInt8]) -> NetlinkRequest {
        NetlinkRequest(type: type, flags: RTNL.dump, header: header)
    }

    /// RTM_NEWADDR: IFA_LOCAL and IFA_ADDRESS both the address (a point-to-point peer is not
    /// wanted), permanent; IPv6 without duplicate address detection when `noDAD`, so the
    /// address is usable at once rather than "tentative" for a second.
    static func newAddress(_ address: InterfaceAddress, index: Int32, noDAD: Bool) -> NetlinkRequest {
        let ip = address.address
        let scope = (ip.isIPv4 ? false : ip.networkBytes.starts(with: [0xfe, 0x80])) ? RTNL.scopeLink : RTNL.scopeUniverse
        var r = NetlinkRequest(type: RTNL.newAddress, flags: createFlags,
                               header: FamilyHeader.address(family: ip.family, prefixLength: address.prefixLength,
                                                            flags: RTNL.ifaPermanent, scope: scope, index: index))
        r.append(RTNL.ifaLocal, ip.networkBytes)
        r.append(RTNL.ifaAddress, ip.networkBytes)
        if noDAD && !ip.isIPv4 { r.append(RTNL.ifaFlags, uint32: RTNL.ifaNoDAD) }
        return r
    }

    /// RTM_NEWROUTE in the main table: to `destination` (nil: default) via `gateway` and/or out
    /// of interface `index`. Without a gateway the route is on-link (scope link).
    static func newRoute(destination: InterfaceAddress?, gateway: IPAddress?, index: Int32?, family: UInt8) -> NetlinkRequest {
        var r = NetlinkRequest(type: RTNL.newRoute, flags: createFlags,
                               header: FamilyHeader.route(family: family, destinationLength: destination?.prefixLength ?? 0,
                                                          table: RTNL.tableMain, protocol: RTNL.protocolBoot,
                                                          scope: gateway == nil ? RTNL.scopeLink : RTNL.scopeUniverse,
                                                          type: RTNL.typeUnicast))
        if let destination { r.append(RTNL.rtaDestination, destination.address.networkBytes) }
        if let gateway { r.append(RTNL.rtaGateway, gateway.networkBytes) }
        if let index { r.append(RTNL.rtaOutputInterface, uint32: UInt32(bitPattern: index)) }
        return r
    }
}
