import Netlink

/// --network-namespace-path=: an existing network namespace the container joins as it is (no
/// host-side set-up), held open from the check until the container ended.
public final class JoinedNamespace {
    private let namespace: NetworkNamespace

    /// The descriptor the container child joins with setns(2).
    public var fd: Int32 { namespace.fd }

    /// Opens `path` and checks that it is a network namespace.
    public init(path: String) throws {
        namespace = try NetworkNamespace.at(path: path)
    }
}
