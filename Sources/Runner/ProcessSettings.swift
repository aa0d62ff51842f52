/// The payload's process settings of `imagectl run` beyond identity and capabilities
/// (runner-proc): console, and later user namespace, limits.
public struct ProcessSettings: Sendable {
    /// Give the payload a pty (its controlling terminal, standard streams and /dev/console)
    /// relayed to imagectl's terminal by `ConsoleRelay`; false: it shares imagectl's streams.
    public var console = false

    public init() {}
}
