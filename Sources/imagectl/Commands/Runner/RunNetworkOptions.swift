import ArgumentParser
import Network
import Runner

/// `imagectl run`'s networking options, as systemd-nspawn names them. Each one implies
/// --private-network: the container gets a network namespace of its own.
struct RunNetworkOptions: ParsableArguments {
    @Flag(name: [.customShort("n"), .customLong("network-veth")], help: ArgumentHelp("""
        A virtual Ethernet link: "ve-MACHINE" on the host, "host0" in the container, with a free \
        /28 from the address pool ($IMAGECTL_NETWORK_POOL, default 192.168.0.0/16), DHCP and DNS \
        (dnsmasq) on the host side and outbound NAT. A payload that is not booted gets host0's \
        address and default route set before it starts.
        """))
    var networkVeth = false

    @Option(name: .customLong("network-veth-extra"), help: ArgumentHelp("An extra veth pair HOST[:CONTAINER], without addresses (repeatable).", valueName: "host[:container]"))
    var networkVethExtra: [String] = []

    @Option(name: .customLong("network-bridge"), help: ArgumentHelp("A veth whose host side \"vb-MACHINE\" joins this existing bridge (its owner gives addresses).", valueName: "bridge"))
    var networkBridge: String?

    @Option(name: .customLong("network-zone"), help: ArgumentHelp("A veth whose host side joins the bridge \"vz-NAME\", made with a /28, DHCP, DNS and NAT by the zone's first machine and removed with its last; machines of a zone reach each other by name.", valueName: "name"))
    var networkZone: String?

    @Option(name: .customLong("network-interface"), help: ArgumentHelp("Move the host interface IF into the container (named NAME there), and back out at the end (repeatable).", valueName: "if[:name]"))
    var networkInterface: [String] = []

    @Option(name: .customLong("network-macvlan"), help: ArgumentHelp("A macvlan link on the host interface IF in the container, \"mv-IF\" unless NAME is given (repeatable).", valueName: "if[:name]"))
    var networkMacvlan: [String] = []

    @Option(name: .customLong("network-ipvlan"), help: ArgumentHelp("An ipvlan link (L2) on the host interface IF in the container, \"iv-IF\" unless NAME is given (repeatable; needs a kernel with ipvlan).", valueName: "if[:name]"))
    var networkIpvlan: [String] = []

    @Option(name: .customLong("network-namespace-path"), help: ArgumentHelp("Run the container in this existing network namespace (a file such as /run/netns/NAME made by ip netns add, or /proc/PID/ns/net), as it is.", valueName: "path"))
    var networkNamespacePath: String?

    @Option(name: [.customShort("p"), .customLong("port")], help: ArgumentHelp("Forward connections to the host's addresses on HOSTPORT to the container's CONTAINERPORT (default the same), tcp unless udp: is given (repeatable; needs -n or --network-zone).", valueName: "[tcp|udp:]hostport[:containerport]"))
    var port: [String] = []

    /// True when any option here was given (the .nspawn file's [Network] links and ports then stay
    /// as the command line set them).
    var isSet: Bool {
        networkVeth || !networkVethExtra.isEmpty || networkBridge != nil || networkZone != nil || !networkInterface.isEmpty
            || !networkMacvlan.isEmpty || !networkIpvlan.isEmpty || networkNamespacePath != nil
    }

    func apply(to c: inout ContainerConfiguration) throws {
        do {
            var s = c.network
            if networkVeth { s.veth = true }
            s.vethExtra += try networkVethExtra.map(NetworkOptionParser.vethExtra)
            if let networkBridge { s.bridge = try NetworkOptionParser.bridge(networkBridge) }
            if let networkZone { s.zone = try NetworkOptionParser.zone(networkZone) }
            s.interfaces += try networkInterface.map { try NetworkOptionParser.hostInterface($0, option: "--network-interface") }
            s.macvlan += try networkMacvlan.map { try NetworkOptionParser.hostInterface($0, option: "--network-macvlan", prefix: "mv-") }
            s.ipvlan += try networkIpvlan.map { try NetworkOptionParser.hostInterface($0, option: "--network-ipvlan", prefix: "iv-") }
            s.ports += try port.map(NetworkOptionParser.port)
            if let networkNamespacePath { s.namespacePath = try NetworkOptionParser.namespacePath(networkNamespacePath) }
            c.network = s
        } catch let error as NetworkSettingsError {
            throw ValidationError(error.description)
        }
    }

    /// Checks the combination once the settings file was merged too, and turns on the private
    /// network namespace every networking option implies.
    static func finish(_ c: inout ContainerConfiguration) throws {
        do { try c.network.validate() } catch let error as NetworkSettingsError { throw ValidationError(error.description) }
        if c.network.namespacePath != nil {
            // The container joins that namespace instead of getting one of its own.
            if c.privateNetwork { throw ValidationError("--network-namespace-path= cannot be combined with --private-network") }
        } else if c.network.isEnabled {
            c.privateNetwork = true
        }
    }
}

/// A host port another running machine forwards, or a machine name another imagectl runs with
/// networking, is "busy": exit status 16, as for a locked image or a running machine's name.
extension NetworkSetupError: BusyReporting {
    var isBusy: Bool {
        switch self {
        case .portInUse, .machineRunning: true
        default: false
        }
    }
}
