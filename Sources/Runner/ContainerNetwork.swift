import Network

/// The network's part of `Container.run`: HostNetwork's `prepare` (addresses decided, before the
/// clone, so that /etc/resolv.conf can name the DNS server), its `attach` run by the parent after
/// the clone (the container's network namespace exists) and before PID 1 may exec the payload
/// (ContainerProcess.start's `beforePayload` hook), and its teardown once the container ended.
final class ContainerNetwork {
    /// A payload that is not booted has no DHCP client: host0 is configured from the host.
    private let configureContainer: Bool
    private let host: HostNetwork?
    /// --network-namespace-path=: the namespace the child joins, held open until the end.
    private let joined: JoinedNamespace?

    /// Prepares the host side (nothing without networking, or for a joined namespace, which is
    /// used as it is) and opens and checks the --network-namespace-path= namespace.
    init(_ configuration: ContainerConfiguration, machine: String) throws {
        configureContainer = !configuration.boot
        let network = configuration.network
        joined = try network.namespacePath.map { try JoinedNamespace(path: $0) }
        host = network.hasHostSide && configuration.privateNetwork && network.namespacePath == nil
            ? try HostNetwork.prepare(network, machine: machine) : nil
    }

    /// The descriptor for ChildSpec.networkNamespaceFD (-1: none).
    var joinedNamespaceFD: Int32 { joined?.fd ?? -1 }

    /// The hook for ContainerProcess.start, or nil without host-side networking.
    var setUpHook: ((Int32) throws -> Void)? {
        guard let host else { return nil }
        let configureContainer = configureContainer
        return { pid in try host.attach(containerPID: pid, configureContainer: configureContainer) }
    }

    /// --resolv-conf=auto with a veth or zone: the container's resolver is the DNS server on the
    /// host side of its link (which also answers for the other machines' names). Copied into a
    /// writable tree, bound into a read-only one. Nil: keep EtcFiles' plan.
    func resolvConfPlan(_ mode: ResolvConfMode, writable: Bool) throws -> EtcFilePlan? {
        guard mode == .auto, let file = try host?.resolvConf() else { return nil }
        var plan = EtcFilePlan()
        plan.steps = writable ? .copy : [.bind, .copy]
        plan.hostPath = file.path
        plan.contents = file.contents
        return plan
    }

    /// The container's addresses for its machine record (nil: none known).
    var addresses: [String]? {
        host?.containerAddress.map { [$0.address.description] }
    }

    func tearDown() {
        host?.tearDown()
    }
}
