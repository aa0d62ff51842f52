import CShims
import Foundation
import Glibc
import LinuxSystem

/// A NETLINK_ROUTE socket: socket(2), send(2), recv(2), close(2). It talks to the network
/// namespace it was created in, for its whole life, whichever thread uses it later.
final class NetlinkSocket {
    let fd: Int32

    private init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) in the calling thread's network namespace,
    /// with extended acknowledgements (the kernel's error text) and capped echoes.
    static func open() throws -> NetlinkSocket {
        let fd = try systemCall("socket(AF_NETLINK)") {
            socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0 /* NETLINK_ROUTE */)
        }
        var on: Int32 = 1
        // SOL_NETLINK 270: NETLINK_CAP_ACK 10, NETLINK_EXT_ACK 11. Both optional (old kernels).
        _ = setsockopt(fd, 270, 10, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, 270, 11, &on, socklen_t(MemoryLayout<Int32>.size))
        return NetlinkSocket(fd: fd)
    }

    /// The socket made by a short-lived thread that first joined the network namespace `nsfd`
    /// (setns(2) with CLONE_NEWNET changes only the calling thread): imagectl's own threads
    /// never leave the host's namespace.
    static func open(inNamespace nsfd: Int32) throws -> NetlinkSocket {
        try NamespaceThread.run {
            try systemCall("setns(CLONE_NEWNET)") { img_setns_net(nsfd) }
            return try open()
        }
    }

    func send(_ bytes: [UInt8]) throws {
        let sent = try systemCall("send(netlink)") { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
        guard sent == bytes.count else { throw SystemCallError("send(netlink)", errno: .messageTooLong) }
    }

    /// One datagram (a kernel reply is at most a page or two; 64 KiB holds any).
    func receive() throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = try systemCall("recv(netlink)") { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
        return Array(buffer[0..<n])
    }
}

/// Runs a body on a thread of its own and hands back its result; used for the steps that must
/// happen in another network namespace (joined by that thread only, which then ends).
enum NamespaceThread {
    /// The thread's result crosses to the waiting caller once, after the semaphore: no data race.
    private final class Box<T>: @unchecked Sendable {
        var result: Result<T, Error>?
        let body: () throws -> T
        init(_ body: @escaping () throws -> T) { self.body = body }
    }

    static func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let box = Box(body)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.result = Result { try box.body() }
            done.signal()
        }
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    /// True when setns(2) into `fd` as a network namespace works (tried on a thread that then ends).
    static func canJoin(_ fd: Int32) -> Bool {
        (try? run { img_setns_net(fd) == 0 }) ?? false
    }

    /// A new, empty network namespace (only a down `lo`), made by unshare(2) in a thread of
    /// its own and kept alive by the returned descriptor of /proc/thread-self/ns/net.
    static func newNamespace() throws -> Int32 {
        try run {
            try systemCall("unshare(CLONE_NEWNET)") { img_unshare_net() }
            return try systemCall("open", path: "/proc/thread-self/ns/net") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) }
        }
    }
}

/// open(2)/close(2) of namespace files.
enum NamespaceFile {
    static func open(_ path: String) throws -> Int32 {
        try systemCall("open", path: path) { Glibc.open(path, O_RDONLY | O_CLOEXEC) }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// st_ino of an open namespace file: two descriptors name the same namespace when equal.
    static func identity(_ fd: Int32) -> UInt64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_ino) : 0
    }
}
