import LinuxSystem

/// rtnetlink over one socket: links, addresses and routes of the network namespace the socket
/// was opened in (see `open(in:)` for another namespace than the caller's).
///
/// Not Sendable: one request at a time, from one thread at a time.
public final class RouteSocket {
    private let socket: NetlinkSocket
    private var sequence: UInt32 = 0

    private init(socket: NetlinkSocket) { self.socket = socket }

    /// A socket in the calling thread's network namespace.
    public static func open() throws -> RouteSocket {
        do { return RouteSocket(socket: try NetlinkSocket.open()) }
        catch { throw NetlinkError(operation: "open a netlink socket", errno: (error as? SystemCallError)?.errno.rawValue ?? 0) }
    }

    /// A socket bound to `namespace`: every request on it acts there (a container's, say).
    public static func open(in namespace: NetworkNamespace) throws -> RouteSocket {
        do { return RouteSocket(socket: try NetlinkSocket.open(inNamespace: namespace.fd)) }
        catch { throw NetlinkError(operation: "open a netlink socket in another network namespace", errno: (error as? SystemCallError)?.errno.rawValue ?? 0) }
    }

    // MARK: links

    /// A veth pair `name` <-> `peer`; the peer is created directly in `peerNamespace` when
    /// given (it never appears in this namespace). Both ends start down.
    public func createVeth(_ name: String, mac: MACAddress? = nil, peer: String, peerMAC: MACAddress? = nil,
                           peerNamespace: NamespaceTarget? = nil) throws {
        try Self.checkName(name, "create veth")
        try Self.checkName(peer, "create veth")
        try call(Requests.newVeth(name: name, mac: mac, peer: peer, peerMAC: peerMAC, peerNamespace: peerNamespace),
                 "create veth pair \(name) <-> \(peer)", link: name)
    }

    public func createBridge(_ name: String) throws {
        try Self.checkName(name, "create bridge")
        try call(Requests.newLink(name: name, kind: "bridge"), "create bridge", link: name)
    }

    /// A macvlan link (bridge mode) on `parent`, created in `namespace` when given.
    public func createMacvlan(_ name: String, parent: String, mac: MACAddress? = nil, namespace: NamespaceTarget? = nil) throws {
        try Self.checkName(name, "create macvlan")
        let parentIndex = try index(of: parent, for: "create macvlan on \(parent)")
        try call(Requests.newVirtualLink(name: name, kind: "macvlan", parent: parentIndex, mac: mac, namespace: namespace),
                 "create macvlan on \(parent)", link: name)
    }

    /// An ipvlan link (L2) on `parent`. Kernels without ipvlan answer EOPNOTSUPP; the error says
    /// so in words.
    public func createIPvlan(_ name: String, parent: String, namespace: NamespaceTarget? = nil) throws {
        try Self.checkName(name, "create ipvlan")
        let parentIndex = try index(of: parent, for: "create ipvlan on \(parent)")
        do {
            try call(Requests.newVirtualLink(name: name, kind: "ipvlan", parent: parentIndex, mac: nil, namespace: namespace),
                     "create ipvlan on \(parent)", link: name)
        } catch var error as NetlinkError where error.errno == EOPNOTSUPP_ {
            error.kernelMessage = "this kernel has no ipvlan support"
            throw error
        }
    }

    /// Deletes a link; returns false when there was none of that name.
    @discardableResult
    public func deleteLink(_ name: String) throws -> Bool {
        guard let link = try link(named: name) else { return false }
        do {
            try call(Requests.deleteLink(index: link.index), "delete link", link: name)
        } catch let error as NetlinkError where error.errno == ENODEV_ {
            return false
        }
        return true
    }

    public func setUp(_ name: String, _ up: Bool = true) throws {
        let index = try index(of: name, for: up ? "set link up" : "set link down")
        try call(Requests.setLink(index: index, flags: up ? RTNL.up : 0, change: RTNL.up), up ? "set link up" : "set link down", link: name)
    }

    public func rename(_ name: String, to newName: String) throws {
        try Self.checkName(newName, "rename link")
        let index = try index(of: name, for: "rename link")
        try call(Requests.setLink(index: index) { $0.append(RTNL.iflaIfname, string: newName) }, "rename link to \(newName)", link: name)
    }

    /// Gives `name` the alternative name `alternative` (up to 127 bytes).
    public func addAlternativeName(_ name: String, _ alternative: String) throws {
        guard !alternative.isEmpty, alternative.utf8.count <= RTNL.maximumAlternativeNameLength else {
            throw NetlinkError(operation: "add alternative name", link: name, errno: EINVAL_)
        }
        let index = try index(of: name, for: "add alternative name")
        try call(Requests.addAlternativeName(index: index, name: alternative), "add alternative name \(alternative)", link: name)
    }

    /// Enslaves `name` to `bridge` (nil: releases it from any master).
    public func setMaster(_ name: String, bridge: String?) throws {
        let index = try index(of: name, for: "set master")
        let master = try bridge.map { try self.index(of: $0, for: "join bridge \($0)") } ?? 0
        try call(Requests.setLink(index: index) { $0.append(RTNL.iflaMaster, uint32: UInt32(bitPattern: master)) },
                 bridge.map { "join bridge \($0)" } ?? "leave its bridge", link: name)
    }

    /// Moves `name` into another namespace, renamed there to `newName` when given.
    public func move(_ name: String, to target: NamespaceTarget, newName: String? = nil) throws {
        if let newName { try Self.checkName(newName, "move link") }
        let index = try index(of: name, for: "move link into namespace")
        try call(Requests.setLink(index: index) { r in
            target.append(to: &r)
            if let newName { r.append(RTNL.iflaIfname, string: newName) }
        }, "move link into another network namespace", link: name)
    }

    // MARK: addresses and routes

    public func addAddress(_ address: InterfaceAddress, to name: String, noDAD: Bool = true) throws {
        let index = try index(of: name, for: "add address \(address)")
        try call(Requests.newAddress(address, index: index, noDAD: noDAD), "add address \(address)", link: name)
    }

    /// A route to `destination` (nil: the default route) via `gateway`, out of `name`.
    public func addRoute(to destination: InterfaceAddress? = nil, via gateway: IPAddress?, link name: String?) throws {
        let index = try name.map { try self.index(of: $0, for: "add route") }
        let family = (gateway ?? destination?.address)?.family ?? RTNL.familyIPv4
        let what = "add route to \(destination?.description ?? "default")" + (gateway.map { " via \($0)" } ?? "")
        try call(Requests.newRoute(destination: destination, gateway: gateway, index: index, family: family), what, link: name)
    }

    // MARK: listing

    public func links() throws -> [Link] {
        try dump(Requests.dump(RTNL.getLink, header: FamilyHeader.link()), "list links").compactMap(Link.init)
    }

    /// The link of that name, or nil.
    public func link(named name: String) throws -> Link? {
        guard name.utf8.count <= RTNL.maximumNameLength, !name.isEmpty else { return nil }
        do {
            let replies = try exchange(Requests.getLink(name: name), "look up link", link: name, dump: false)
            return replies.compactMap(Link.init).first
        } catch let error as NetlinkError where error.errno == ENODEV_ {
            return nil
        }
    }

    public func addresses() throws -> [AddressEntry] {
        try dump(Requests.dump(RTNL.getAddress, header: FamilyHeader.address(family: RTNL.familyUnspecified)), "list addresses")
            .compactMap(AddressEntry.init)
    }

    /// Routes of the main table (IPv4 and IPv6).
    public func routes() throws -> [Route] {
        try dump(Requests.dump(RTNL.getRoute, header: FamilyHeader.route(family: RTNL.familyUnspecified)), "list routes")
            .compactMap(Route.init).filter { $0.table == UInt32(RTNL.tableMain) }
    }

    // MARK: plumbing

    private func index(of name: String, for operation: String) throws -> Int32 {
        guard let link = try link(named: name) else {
            throw NetlinkError(operation: operation, link: name, errno: ENODEV_, kernelMessage: "no such interface")
        }
        return link.index
    }

    private static func checkName(_ name: String, _ operation: String) throws {
        if name.isEmpty || name.utf8.count > RTNL.maximumNameLength || name.contains("/") || name.contains(where: \.isWhitespace) {
            throw NetlinkError(operation: operation, link: name, errno: EINVAL_, kernelMessage: "not a valid interface name (1-15 bytes, no '/' or space)")
        }
    }

    private func call(_ request: NetlinkRequest, _ operation: String, link: String?) throws {
        _ = try exchange(request, operation, link: link, dump: false)
    }

    private func dump(_ request: NetlinkRequest, _ operation: String) throws -> [NetlinkMessage] {
        try exchange(request, operation, link: nil, dump: true)
    }

    /// Sends one request and collects the replies to it: up to NLMSG_DONE for a dump, up to the
    /// acknowledgement (or the one answer) otherwise. An error reply becomes a NetlinkError.
    private func exchange(_ request: NetlinkRequest, _ operation: String, link: String?, dump: Bool) throws -> [NetlinkMessage] {
        sequence &+= 1
        let seq = sequence
        do {
            try socket.send(request.message(sequence: seq))
        } catch {
            throw NetlinkError(operation: operation, link: link, errno: (error as? SystemCallError)?.errno.rawValue ?? 0)
        }
        var collected: [NetlinkMessage] = []
        while true {
            let datagram: [UInt8]
            do { datagram = try socket.receive() } catch {
                throw NetlinkError(operation: operation, link: link, errno: (error as? SystemCallError)?.errno.rawValue ?? 0)
            }
            guard let messages = NetlinkMessage.parse(datagram) else { throw NetlinkError(operation: operation, link: link, errno: 0) }
            for message in messages where message.sequence == seq {
                if message.type == RTNL.done { return collected }
                if let (code, text) = message.errorReply {
                    if code != 0 { throw NetlinkError(operation: operation, link: link, errno: code, kernelMessage: text) }
                    return collected
                }
                collected.append(message)
                // A plain GET answers with one message and no acknowledgement.
                if !dump && message.flags & RTNL.multi == 0 && request.bytes.count > 4 && !request.wantsAck { return collected }
            }
        }
    }
}

extension NetlinkRequest {
    var wantsAck: Bool { bytes.readNative(UInt16.self, at: 6) & RTNL.ack != 0 }
}
