import Network

/// The network's part of `Container.run`: HostNetwork's set-up, run by the parent after the
/// clone (the container's network namespace exists) and before PID 1 may exec the payload
/// (ContainerProcess.start's `beforePayload` hook), and its teardown once the container ended.
final class ContainerNetwork {
    private let settings: NetworkSettings
    private let machine: String
    /// A payload that is not booted has no DHCP client: host0 is configured from the host.
    private let configureContainer: Bool
    private(set) var host: HostNetwork?

    /// --network-namespace-path=: the namespace the child joins, held open until the end.
    private let joined: JoinedNamespace?

    /// Opens (and checks) the --network-namespace-path= namespace, when there is one.
    init(_ configuration: ContainerConfiguration, machine: String) throws {
        settings = configuration.network
        self.machine = machine
        configureContainer = !configuration.boot
        // Host-side work only for a namespace of the container's own (never for a joined one).
        enabled = configuration.network.hasHostSide && configuration.privateNetwork && configuration.network.namespacePath == nil
        joined = try configuration.network.namespacePath.map { try JoinedNamespace(path: $0) }
    }

    private let enabled: Bool

    /// The descriptor for ChildSpec.networkNamespaceFD (-1: none).
    var joinedNamespaceFD: Int32 { joined?.fd ?? -1 }

    /// The hook for ContainerProcess.start, or nil without networking.
    var setUpHook: ((Int32) throws -> Void)? {
        guard enabled else { return nil }
        return { [self] pid in
            host = try HostNetwork.setUp(settings, machine: machine, containerPID: pid, configureContainer: configureContainer)
        }
    }

    /// The container's addresses for its machine record (nil: none known).
    var addresses: [String]? {
        host?.containerAddress.map { [$0.address.description] }
    }

    func tearDown() {
        host?.tearDown()
        host = nil
    }
}
