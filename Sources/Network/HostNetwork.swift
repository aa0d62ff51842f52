import Foundation
import LinuxSystem
import Netlink

/// The host side of a container's networking, done by the parent between the clone of the
/// container (its network namespace exists) and the go that lets the payload run; undone by
/// `tearDown()` when the machine ends, or by `cleanLeftovers()` after a kill -9.
///
/// What it does, per nspawn option, in the host's (the calling process's) network namespace:
/// - veth (-n): "ve-MACHINE" <-> "host0" (created in the container), a free /28 from the pool,
///   .1 on the host side, a dnsmasq (DHCP: .2 fixed by the container's MAC; DNS), masquerade of
///   the /28 and -p port forwards in the nftables table "imagectl-MACHINE", IPv4 forwarding on.
///   IPv6 link-local addresses come from the kernel when the links go up.
/// - bridge: "vb-MACHINE" joined to an existing bridge (whose owner gives addresses).
/// - zone: "vb-MACHINE" joined to "vz-ZONE", which the first member creates with a /28, a
///   dnsmasq and a masquerade, and the last member removes.
/// - extra veths, macvlan/ipvlan links made in the container, host interfaces moved in (and
///   back out at the end: the container's namespace is held open until then).
/// For a payload that is not booted (no DHCP client), host0 gets the machine's address and a
/// default route before the payload runs.
public final class HostNetwork {
    public let machine: String
    /// The container's address on host0, when it has one ("192.168.0.2/28").
    public private(set) var containerAddress: InterfaceAddress?
    /// The host side's address (the container's gateway, DNS server).
    public private(set) var gateway: IPAddress?

    private var record: MachineNetworkRecord
    private let settings: NetworkSettings
    private var lock: FileLock?
    /// Held open so that moved interfaces can be moved back after PID 1 ended.
    private var containerNamespace: NetworkNamespace?
    /// The namespace set-up ran in (the calling thread's): where moved interfaces go back to.
    /// Never "the namespace of our PID", which is the main thread's and may be another one.
    private var hostNamespace: NetworkNamespace?
    private var tornDown = false
    private let state: NetworkState

    private init(machine: String, settings: NetworkSettings, state: NetworkState) {
        self.machine = machine
        self.settings = settings
        self.state = state
        record = MachineNetworkRecord(machine: machine, supervisor: HostProcess.processID)
    }

    /// Sets up everything `settings` asks for around the container whose PID 1 is `containerPID`:
    /// `prepare` and `attach` in one. On failure whatever was made is removed again.
    public static func setUp(_ settings: NetworkSettings, machine: String, containerPID: Int32,
                             configureContainer: Bool, pool: AddressPool? = nil,
                             runtimeDirectory: String? = nil) throws -> HostNetwork {
        let network = try prepare(settings, machine: machine, pool: pool, runtimeDirectory: runtimeDirectory)
        try network.attach(containerPID: containerPID, configureContainer: configureContainer)
        return network
    }

    /// The part before the container exists: refuses a host port another machine forwards,
    /// takes the machine's record lock, and decides addresses (the veth's /28, or the zone, made
    /// on first use, and this machine's address in it), so that the container's
    /// /etc/resolv.conf can name the DNS server (`dnsServer`) before the clone.
    ///
    /// For a container's own veth (`forTap` false) its masquerade and port forwards are added here
    /// on a thread of their own, overlapping the clone. The veth itself waits for the container's
    /// namespace: a peer created there costs far less than one moved in (a move waits for an RCU
    /// grace period, about 20 ms). A VM's tap is made by qemu (`attachTap`).
    public static func prepare(_ settings: NetworkSettings, machine: String, pool: AddressPool? = nil,
                               runtimeDirectory: String? = nil, forTap: Bool = false) throws -> HostNetwork {
        let network = HostNetwork(machine: machine, settings: settings, state: NetworkState(runtimeDirectory: runtimeDirectory))
        do {
            try network.reserve(pool: pool ?? AddressPool.configured(), makeVeth: !forTap)
        } catch {
            network.tearDown()
            throw error
        }
        return network
    }

    /// The part after the clone: links into the container PID 1's namespace, the host side's
    /// address, dnsmasq and rules, and (`configureContainer`) host0's address and route. On
    /// failure the whole network of the machine is removed again.
    public func attach(containerPID: Int32, configureContainer: Bool) throws {
        do {
            try build(containerPID: containerPID, configureContainer: configureContainer)
        } catch {
            tearDown()
            throw error
        }
    }

    /// The MAC address the machine's own end of its link gets (host0, or a VM's NIC on a tap):
    /// the one its static DHCP lease is for.
    public var machineMAC: MACAddress? { containerMAC }

    /// For a VM (`imagectl vm --network-tap`): the host side of the tap `interface` qemu made, as
    /// for a veth's host side: the /28's first address, a dnsmasq with the static lease for
    /// `machineMAC` (give it to the VM's NIC), masquerade and port forwards. Waits up to
    /// `timeout` seconds for qemu to create the tap. Prepared with `veth` set; on failure the
    /// machine's network is removed again.
    public func attachTap(_ interface: String, timeout: Double = 10) throws {
        do {
            let host = try RouteSocket.open()
            var waited = 0.0
            while try host.link(named: interface) == nil {
                guard waited < timeout else { throw NetworkSetupError.step("set up the tap \(interface)", "qemu did not create it") }
                usleep(20_000)
                waited += 0.02
            }
            let all = try state.lockAll()
            defer { all.close() }
            guard let subnet, let containerAddress, let containerMAC else {
                throw NetworkSetupError.step("set up the tap \(interface)", "no address was prepared for it")
            }
            try host.addAddress(subnet.hostAddress, to: interface)
            try host.setUp(interface)
            record.dnsmasqInterface = interface
            try save()
            let dns = DnsmasqConfiguration(interface: interface, subnet: subnet, stateDirectory: state.directory)
            _ = try Dnsmasq.start(dns, members: [.init(name: machine, mac: containerMAC.description, address: containerAddress.address.description)])
            let rules = FirewallRules(masquerade: subnet, ports: settings.ports, target: containerAddress.address)
            record.firewallElements = rules.elements
            try save()
            try HostProcess.enableSysctl("/proc/sys/net/ipv4/ip_forward")
            try Nftables.add(rules.elements, for: machine)
        } catch {
            tearDown()
            throw error
        }
    }

    /// The DNS server for the container (the host side of its veth or zone), once prepared.
    public var dnsServer: IPAddress? { gateway }

    /// A resolv.conf naming `dnsServer`, written beside the record (a read-only tree gets it
    /// bind-mounted); nil without one.
    public func resolvConf() throws -> (path: String, contents: [UInt8])? {
        guard let dnsServer else { return nil }
        let text = "# Written by imagectl: the DNS server on the host side of this machine's link.\nnameserver \(dnsServer)\n"
        let path = state.recordPath(machine) + ".resolv.conf"
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        catch { throw NetworkSetupError.step("write \(path)", error.localizedDescription) }
        return (path, Array(text.utf8))
    }

    private var subnet: Subnet?
    private var hostMAC: MACAddress?
    private var containerMAC: MACAddress?
    private var machineID: [UInt8] = []
    /// The dnsmasq of the machine's own veth, starting.
    private var dnsmasqStart: BackgroundJob<Int32>?
    /// Its masquerade and port forwards, being added (started by `prepare`).
    private var firewallStart: BackgroundJob<Void>?

    private func reserve(pool: AddressPool, makeVeth: Bool) throws {
        let all = try state.lockAll()
        defer { all.close() }
        Self.cleanLeftoversLocked(state)
        try checkPorts()
        do {
            lock = try FileLock.tryLock(path: state.recordPath(machine) + ".lock", kind: .exclusive)
        } catch {
            throw NetworkSetupError.step("lock the network record of \(machine)", error.description)
        }
        guard lock != nil else { throw NetworkSetupError.machineRunning(machine) }
        machineID = try MachineID.read()
        record.ports = settings.ports.map { .init(proto: $0.proto.rawValue, hostPort: $0.hostPort, containerPort: $0.containerPort) }
        try save()
        guard settings.hasVeth else { return }
        hostMAC = StableMAC.generate(machine: machine, kind: .vethHost, machineID: machineID)
        containerMAC = StableMAC.generate(machine: machine, kind: .vethContainer, machineID: machineID)
        if let zone = settings.zone {
            let (zoneSubnet, member) = try joinZone(zone, host: try RouteSocket.open(), pool: pool, mac: containerMAC!)
            subnet = zoneSubnet
            containerAddress = InterfaceAddress(member, prefixLength: 28)
        } else if settings.bridge == nil {
            // Chosen before the veth exists, so that the link's own routes do not count, and
            // recorded at once, so that another machine starting meanwhile does not take it.
            let veth = try allocate(pool, host: try RouteSocket.open())
            subnet = veth
            record.subnet = veth
            containerAddress = InterfaceAddress(veth.address(2), prefixLength: 28)
        }
        if let subnet, let containerAddress {
            gateway = subnet.gateway
            record.address = containerAddress.address.description
        }
        try save()
        if makeVeth, settings.zone == nil, settings.bridge == nil, let subnet, let containerAddress {
            try startFirewall(subnet: subnet, containerAddress: containerAddress)
        }
    }

    /// The nftables elements of a veth of the machine's own, added in the background before the
    /// container exists (forwards to an address nobody has yet fail as they would to a container
    /// not yet listening).
    private func startFirewall(subnet: Subnet, containerAddress: InterfaceAddress) throws {
        let elements = FirewallRules(masquerade: subnet, ports: settings.ports, target: containerAddress.address).elements
        record.firewallElements = elements
        try save()
        let machine = machine
        firewallStart = BackgroundJob {
            try HostProcess.enableSysctl("/proc/sys/net/ipv4/ip_forward")
            try Nftables.add(elements, for: machine)
        }
    }

    private func build(containerPID: Int32, configureContainer: Bool) throws {
        let all = try state.lockAll()
        defer { all.close() }
        let host = try RouteSocket.open()
        hostNamespace = try NetworkNamespace.current()
        let namespace = try NetworkNamespace.of(pid: containerPID)
        // A container without a namespace of its own would get "host0" and its routes in ours.
        guard !namespace.isSame(as: hostNamespace!) else {
            throw NetworkSetupError.step("set up the network of \(machine)", "the container has no network namespace of its own")
        }
        containerNamespace = namespace
        let inside = try RouteSocket.open(in: namespace)

        if settings.hasVeth {
            let bridged = settings.bridge != nil || settings.zone != nil
            let hostName = InterfaceNames.hostVeth(machine: machine, bridged: bridged)
            record.createdLinks.append(hostName)
            try save()
            try host.createVeth(hostName, mac: hostMAC, peer: "host0", peerMAC: containerMAC, peerNamespace: .namespace(namespace))
            addAlternativeName(host, hostName, bridged: bridged)
            if let bridge = settings.bridge ?? settings.zone.map(InterfaceNames.zoneBridge) {
                try host.setMaster(hostName, bridge: bridge)
                try host.setUp(hostName)
            } else if let subnet, let containerAddress, let containerMAC {
                try host.addAddress(subnet.hostAddress, to: hostName)
                try host.setUp(hostName)
                record.dnsmasqInterface = hostName
                try save()
                // dnsmasq (it daemonizes once its sockets are bound) starts while host0 is set up.
                let dns = DnsmasqConfiguration(interface: hostName, subnet: subnet, stateDirectory: state.directory)
                let member = DnsmasqConfiguration.Member(name: machine, mac: containerMAC.description, address: containerAddress.address.description)
                dnsmasqStart = BackgroundJob { try Dnsmasq.start(dns, members: [member]) }
            }
            if configureContainer {
                if let subnet, let containerAddress {
                    try inside.addAddress(containerAddress, to: "host0")
                    try inside.setUp("host0")
                    try inside.addRoute(via: subnet.gateway, link: "host0")
                } else {
                    try inside.setUp("host0")
                }
            }
        }

        for (i, pair) in settings.vethExtra.enumerated() {
            record.createdLinks.append(pair.host)
            try save()
            try host.createVeth(pair.host, mac: StableMAC.generate(machine: machine, kind: .extraHost, index: UInt64(i), machineID: machineID),
                                peer: pair.container,
                                peerMAC: StableMAC.generate(machine: machine, kind: .extraContainer, index: UInt64(i), machineID: machineID),
                                peerNamespace: .namespace(namespace))
        }
        for (i, pair) in settings.macvlan.enumerated() {
            try host.createMacvlan(pair.container, parent: pair.host,
                                   mac: StableMAC.generate(machine: machine, kind: .macvlan, index: UInt64(i), machineID: machineID),
                                   namespace: .namespace(namespace))
        }
        for pair in settings.ipvlan {
            try host.createIPvlan(pair.container, parent: pair.host, namespace: .namespace(namespace))
        }
        for pair in settings.interfaces {
            try host.move(pair.host, to: .namespace(namespace), newName: pair.container == pair.host ? nil : pair.container)
        }

        if let firewallStart {
            try firewallStart.wait()
        } else {
            // A bridge's or zone's member: the forwards only (the zone masquerades its subnet).
            let rules = FirewallRules(masquerade: nil, ports: settings.ports, target: containerAddress?.address)
            if !rules.isEmpty {
                record.firewallElements = rules.elements
                try save()
                try Nftables.add(rules.elements, for: machine)
            }
        }
        // Before the payload runs: its resolv.conf names this dnsmasq.
        try dnsmasqStart?.wait()
    }

    /// Removes what `setUp` made (idempotent): moved interfaces go back under their own names,
    /// the veth (and with it host0), the dnsmasq, the rules, the zone when this was its last
    /// member, and the record.
    public func tearDown() {
        guard !tornDown else { return }
        tornDown = true
        // A dnsmasq still starting would write its pid file after the stop looked for it, and
        // rules still being added would outlive their deletion.
        _ = try? dnsmasqStart?.wait()
        _ = try? firewallStart?.wait()
        let all = try? state.lockAll()
        defer { all?.close() }
        if let namespace = containerNamespace, let hostNamespace, !settings.interfaces.isEmpty,
           let inside = try? RouteSocket.open(in: namespace) {
            for pair in settings.interfaces.reversed() {
                try? inside.move(pair.container, to: .namespace(hostNamespace), newName: pair.container == pair.host ? nil : pair.host)
            }
        }
        containerNamespace = nil
        hostNamespace = nil
        Self.undo(record, state)
        lock?.releaseRemovingFile()
        lock = nil
    }

    deinit { tearDown() }

    // MARK: steps

    private func save() throws { try NetworkState.write(record, to: state.recordPath(machine)) }

    /// A -p host port another running machine forwards already is refused before anything exists.
    private func checkPorts() throws {
        for path in state.machineRecordPaths() {
            guard let other = NetworkState.read(MachineNetworkRecord.self, from: path), other.machine != machine else { continue }
            for port in settings.ports where other.ports.contains(where: { $0.proto == port.proto.rawValue && $0.hostPort == port.hostPort }) {
                throw NetworkSetupError.portInUse(port, machine: other.machine)
            }
        }
    }

    /// A /28 no route or address of the host and no other machine or zone of imagectl uses.
    private func allocate(_ pool: AddressPool, host: RouteSocket) throws -> Subnet {
        var taken = try host.routes().compactMap(\.destination) + host.addresses().map(\.address)
        for path in state.machineRecordPaths() {
            if let subnet = NetworkState.read(MachineNetworkRecord.self, from: path)?.subnet { taken.append(subnet.network) }
        }
        for path in (try? FileManager.default.contentsOfDirectory(atPath: state.directory)) ?? [] where path.hasPrefix("zone-") {
            if let zone = NetworkState.read(ZoneRecord.self, from: "\(state.directory)/\(path)") { taken.append(zone.subnet.network) }
        }
        guard let subnet = pool.allocate(avoiding: taken) else { throw NetworkSetupError.poolExhausted(pool.description) }
        return subnet
    }

    /// Joins (creating on first use) the zone's bridge, /28, dnsmasq and masquerade; returns the
    /// subnet and this machine's address in it (.2 up, the first one free).
    private func joinZone(_ zone: String, host: RouteSocket, pool: AddressPool, mac: MACAddress) throws -> (Subnet, IPAddress) {
        let path = state.zonePath(zone)
        let bridge = InterfaceNames.zoneBridge(zone)
        var zoneRecord: ZoneRecord
        if let existing = NetworkState.read(ZoneRecord.self, from: path), try host.link(named: bridge) != nil {
            zoneRecord = existing
        } else {
            let subnet = try allocate(pool, host: host)
            zoneRecord = ZoneRecord(zone: zone, bridge: bridge, subnet: subnet)
            try NetworkState.write(zoneRecord, to: path)
            _ = try? host.deleteLink(bridge)
            try host.createBridge(bridge)
            try host.addAddress(subnet.hostAddress, to: bridge)
            try host.setUp(bridge)
            let dns = DnsmasqConfiguration(interface: bridge, subnet: subnet, stateDirectory: state.directory)
            _ = try Dnsmasq.start(dns, members: [])
            try HostProcess.enableSysctl("/proc/sys/net/ipv4/ip_forward")
            let elements = FirewallRules(masquerade: subnet, ports: [], target: nil).elements
            try Nftables.add(elements, for: "zone \(zone)")
        }
        let used = Set(zoneRecord.members.map(\.address))
        guard let n = (2...14).first(where: { !used.contains(zoneRecord.subnet.address(UInt32($0)).description) }) else {
            throw NetworkSetupError.step("join zone \(zone)", "the zone's /28 has no free address left")
        }
        let address = zoneRecord.subnet.address(UInt32(n))
        zoneRecord.members.removeAll { $0.name == machine }
        zoneRecord.members.append(.init(name: machine, mac: mac.description, address: address.description))
        record.zone = zone
        try save()
        try NetworkState.write(zoneRecord, to: path)
        try reloadZoneDNS(zoneRecord)
        return (zoneRecord.subnet, address)
    }

    /// A shortened host-side name also gets the whole one as an alternative name, as nspawn does;
    /// like nspawn, a kernel that refuses it (before 5.5) does not stop the machine.
    private func addAlternativeName(_ host: RouteSocket, _ hostName: String, bridged: Bool) {
        guard let whole = InterfaceNames.hostVethAlternative(machine: machine, bridged: bridged) else { return }
        _ = try? host.addAlternativeName(hostName, whole)
    }

        private func reloadZoneDNS(_ zone: ZoneRecord) throws {
        let dns = DnsmasqConfiguration(interface: zone.bridge, subnet: zone.subnet, stateDirectory: state.directory)
        try Dnsmasq.writeMembers(dns, zone.members)
        if let pid = Dnsmasq.readPID(dns.pidFile) { HostProcess.signal(pid, hangUp: ()) }
    }

    /// Undoes one record (ours, or a leftover's). Caller holds the global lock.
    private static func undo(_ record: MachineNetworkRecord, _ state: NetworkState) {
        let host = try? RouteSocket.open()
        // dnsmasq stops and the rules go while the links go.
        let dnsmasqStopped = record.dnsmasqInterface.flatMap { interface in
            record.subnet.map { subnet in
                BackgroundJob { Dnsmasq.stop(DnsmasqConfiguration(interface: interface, subnet: subnet, stateDirectory: state.directory)) }
            }
        }
        defer { _ = try? dnsmasqStopped?.wait() }
        let elements = record.firewallElements
        let rulesDeleted = elements.isEmpty ? nil : BackgroundJob { Nftables.delete(elements) }
        defer { _ = try? rulesDeleted?.wait() }
        for link in record.createdLinks.reversed() { _ = try? host?.deleteLink(link) }
        if let zone = record.zone { leaveZone(zone, machine: record.machine, host: host, state) }
        try? FileManager.default.removeItem(atPath: state.recordPath(record.machine) + ".resolv.conf")
        try? FileManager.default.removeItem(atPath: state.recordPath(record.machine))
    }

    private static func leaveZone(_ zone: String, machine: String, host: RouteSocket?, _ state: NetworkState) {
        let path = state.zonePath(zone)
        guard var zoneRecord = NetworkState.read(ZoneRecord.self, from: path) else { return }
        zoneRecord.members.removeAll { $0.name == machine }
        let dns = DnsmasqConfiguration(interface: zoneRecord.bridge, subnet: zoneRecord.subnet, stateDirectory: state.directory)
        if zoneRecord.members.isEmpty {
            Dnsmasq.stop(dns)
            Nftables.delete(FirewallRules(masquerade: zoneRecord.subnet, ports: [], target: nil).elements)
            _ = try? host?.deleteLink(zoneRecord.bridge)
            try? FileManager.default.removeItem(atPath: path)
        } else {
            try? NetworkState.write(zoneRecord, to: path)
            try? Dnsmasq.writeMembers(dns, zoneRecord.members)
            if let pid = Dnsmasq.readPID(dns.pidFile) { HostProcess.signal(pid, hangUp: ()) }
        }
    }

    // MARK: leftovers

    /// Removes what killed imagectl processes left: records whose lock nobody holds. Returns the
    /// machine names cleaned. Safe to call at any time (`imagectl clean`).
    @discardableResult
    public static func cleanLeftovers(runtimeDirectory: String? = nil) -> [String] {
        let state = NetworkState(runtimeDirectory: runtimeDirectory)
        guard FileManager.default.fileExists(atPath: state.directory), let all = try? state.lockAll() else { return [] }
        defer { all.close() }
        let cleaned = cleanLeftoversLocked(state)
        // The shared table goes when nothing uses it (a run leaves it, as nspawn leaves its own).
        Nftables.deleteTableIfUnused()
        return cleaned
    }

    @discardableResult
    private static func cleanLeftoversLocked(_ state: NetworkState) -> [String] {
        var cleaned: [String] = []
        for path in state.machineRecordPaths() {
            guard let record = NetworkState.read(MachineNetworkRecord.self, from: path) else {
                try? FileManager.default.removeItem(atPath: path)
                continue
            }
            guard let lock = try? FileLock.tryLock(path: path + ".lock", kind: .exclusive) else { continue }  // alive
            undo(record, state)
            lock.releaseRemovingFile()
            cleaned.append(record.machine)
        }
        return cleaned
    }
}

/// The host's machine ID (/etc/machine-id), the input nspawn hashes with the machine name.
enum MachineID {
    static func read(path: String = "/etc/machine-id") throws -> [UInt8] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let chars = Array(text.utf8)
        guard chars.count == 32 else { throw NetworkSetupError.step("read the machine ID", "\(path) is missing or not 32 hex digits") }
        var bytes: [UInt8] = []
        for i in stride(from: 0, to: 32, by: 2) {
            guard let byte = UInt8(String(decoding: chars[i..<(i + 2)], as: UTF8.self), radix: 16) else {
                throw NetworkSetupError.step("read the machine ID", "\(path) is not 32 hex digits")
            }
            bytes.append(byte)
        }
        return bytes
    }
}

extension HostNetwork {
    /// Drops the lock without undoing anything: what a kill -9 of imagectl leaves (tests only).
    func abandonForTesting() {
        _ = try? dnsmasqStart?.wait()
        _ = try? firewallStart?.wait()
        tornDown = true
        lock?.close()
        lock = nil
        containerNamespace = nil
    }
}
