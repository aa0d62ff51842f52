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

    init(_ configuration: ContainerConfiguration, machine: String) {
        settings = configuration.network
        self.machine = machine
        configureContainer = !configuration.boot
        enabled = configuration.network.isEnabled && configuration.privateNetwork
    }

    private let enabled: Bool

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
