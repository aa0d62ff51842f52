import LinuxSystem

/// A network namespace held open by a descriptor (which keeps it alive), or the one of a process
/// named by PID (which lives as long as the process).
public final class NetworkNamespace: @unchecked Sendable {
    // @unchecked: `fd` is set once in init and only closed in deinit.
    public let fd: Int32

    private init(fd: Int32) { self.fd = fd }
    deinit { NamespaceFile.close(fd) }

    /// The namespace of process `pid` (/proc/PID/ns/net).
    public static func of(pid: Int32) throws -> NetworkNamespace {
        NetworkNamespace(fd: try NamespaceFile.open("/proc/\(pid)/ns/net"))
    }

    /// A namespace file, e.g. one bind-mounted by `ip netns add` under /run/netns. Checked by
    /// joining it from a throwaway thread: setns(2) refuses anything but a network namespace.
    public static func at(path: String) throws -> NetworkNamespace {
        let namespace: NetworkNamespace
        do { namespace = NetworkNamespace(fd: try NamespaceFile.open(path)) }
        catch { throw NetlinkError(operation: "open network namespace \(path)", errno: (error as? SystemCallError)?.errno.rawValue ?? 0) }
        guard NamespaceThread.canJoin(namespace.fd) else {
            throw NetlinkError(operation: "use \(path)", errno: EINVAL_, kernelMessage: "not a network namespace")
        }
        return namespace
    }

    /// The calling thread's namespace.
    public static func current() throws -> NetworkNamespace {
        NetworkNamespace(fd: try NamespaceFile.open("/proc/thread-self/ns/net"))
    }

    /// A new namespace with only `lo` (down); no process of ours runs in it.
    public static func create() throws -> NetworkNamespace {
        NetworkNamespace(fd: try NamespaceThread.newNamespace())
    }

    /// True when both descriptors refer to one namespace (same nsfs inode).
    public func isSame(as other: NetworkNamespace) -> Bool {
        NamespaceFile.identity(fd) == NamespaceFile.identity(other.fd)
    }
}

/// Where a link is to be moved or created: a process's network namespace or a namespace file.
public enum NamespaceTarget: Sendable {
    case pid(Int32)
    case namespace(NetworkNamespace)

    func append(to request: inout NetlinkRequest) {
        switch self {
        case .pid(let pid): request.append(RTNL.iflaNetNSPID, uint32: UInt32(bitPattern: pid))
        case .namespace(let ns): request.append(RTNL.iflaNetNSFD, uint32: UInt32(bitPattern: ns.fd))
        }
    }
}
