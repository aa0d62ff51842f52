/// A failed host-side network step.
public enum NetworkSetupError: Error, CustomStringConvertible, Equatable, Sendable {
    case missingTool(String, package: String)
    /// What was being done and why it failed.
    case step(String, String)
    /// No free /28 left in the pool.
    case poolExhausted(String)
    /// Another running machine forwards this host port already.
    case portInUse(PortForward, machine: String)
    /// Another imagectl runs a machine of this name with networking (its record is locked).
    case machineRunning(String)

    public var description: String {
        switch self {
        case .missingTool(let tool, let package): "networking needs \(tool) (Debian package \(package)), which is not installed"
        case .step(let what, let why): why.isEmpty ? "cannot \(what)" : "cannot \(what): \(why)"
        case .poolExhausted(let pool): "no free /28 left in the address pool \(pool)"
        case .portInUse(let port, let machine): "host port \(port.proto):\(port.hostPort) is already forwarded to machine \(machine)"
        case .machineRunning(let machine): "machine \(machine) is already running"
        }
    }
}
