import Glibc

/// A connected AF_UNIX stream socket to qemu's QMP server, read line by line (QMP sends one
/// JSON object per line), every read bounded by a timeout so that a wedged qemu cannot hang
/// `imagectl stop`.
final class QMPSocket {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws(MachineError) {
        var address = try Self.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .qmp("socket: \(MachineError.errnoText(errno))") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw .qmp("cannot connect to \(path): \(MachineError.errnoText(code))")
        }
        self.fd = fd
    }

    /// A connection accepted by `QMPListener` (the socket is owned from now on).
    init(connected fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// The descriptor, for a caller that polls it beside others (`readAvailable` then reads).
    var descriptor: Int32 { fd }

    static func address(_ path: String) throws(MachineError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw .qmp("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        return address
    }

    /// The complete lines that one read(2) brings (none when it ended mid-line), or nil when
    /// qemu closed the connection. Called when poll(2) said the socket is readable; a socket
    /// that is not readable would block here.
    func readAvailable() throws(MachineError) -> [String]? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        var n: Int
        repeat {
            n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        } while n < 0 && errno == EINTR
        if n < 0 {
            // A reset connection is as closed as one qemu closed on exit.
            if errno == ECONNRESET { return nil }
            throw .qmp("read: \(MachineError.errnoText(errno))")
        }
        if n == 0 { return nil }
        pending += chunk[0..<n]
        var lines: [String] = []
        while let newline = pending.firstIndex(of: 0x0a) {
            lines.append(String(decoding: pending[..<newline], as: UTF8.self))
            pending.removeSubrange(...newline)
        }
        return lines
    }

    func send(_ line: String) throws(MachineError) {
        var bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count {
            // MSG_NOSIGNAL: a qemu that has just exited must cost an error, not a SIGPIPE.
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .qmp("write: \(MachineError.errnoText(errno))") }
            done += n
        }
    }

    /// The next line, or nil when qemu closed the connection (it exits after "quit").
    func readLine(timeout seconds: Double) throws(MachineError) -> String? {
        let deadline = MonotonicClock.now + seconds
        while true {
            if let newline = pending.firstIndex(of: 0x0a) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let left = deadline - MonotonicClock.now
            guard left > 0 else { throw .qmp("qemu did not answer within \(Int(seconds)) s") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(left * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            pending += chunk[0..<n]
        }
    }
}

/// A listening AF_UNIX socket that qemu connects to as a client (`-chardev socket,path=`
/// without server=on): qemu connects while it starts, before the guest runs, so the runner's
/// QMP connection exists from the beginning and no event is lost to a late connect. The socket
/// file is made mode 0600 and removed by `close()` (or once accepted).
final class QMPListener {
    private var fd: Int32
    let path: String

    init(path: String) throws(MachineError) {
        var address = try QMPSocket.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .qmp("socket: \(MachineError.errnoText(errno))") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            throw .qmp("cannot bind \(path): \(MachineError.errnoText(code))")
        }
        // Owner only. (Whoever connects in the moment before is still not taken for qemu:
        // accept checks the peer's PID.)
        chmod(path, 0o600)
        guard listen(fd, 4) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            unlink(path)
            throw .qmp("listen on \(path): \(MachineError.errnoText(code))")
        }
        self.fd = fd
        self.path = path
    }

    deinit { close() }

    func close() {
        guard fd >= 0 else { return }
        _ = Glibc.close(fd)
        fd = -1
        unlink(path)
    }

    /// Waits up to `timeout` seconds for a connection from process `peer` (SO_PEERCRED); a
    /// connection from any other process is closed and the wait goes on. Returns nil when
    /// `stillWaiting` says to give up (qemu ended before it connected) or the time is up.
    func accept(from peer: Int32, timeout: Double, stillWaiting: () -> Bool) throws(MachineError) -> QMPSocket? {
        let deadline = MonotonicClock.now + timeout
        while MonotonicClock.now < deadline && stillWaiting() {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready < 0 && errno != EINTR { throw .qmp("poll: \(MachineError.errnoText(errno))") }
            guard ready > 0 else { continue }
            // accept4 is not in Swift's Glibc; the listener's own CLOEXEC does not carry over, so
            // it is set at once (qemu, the only child started meanwhile, is already running).
            let connection = Glibc.accept(fd, nil, nil)
            if connection < 0 {
                if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { continue }
                throw .qmp("accept on \(path): \(MachineError.errnoText(errno))")
            }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (not in Swift's Glibc either).
            var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
            var length = socklen_t(MemoryLayout.size(ofValue: credentials))
            guard getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.pid == peer else {
                _ = Glibc.close(connection)
                continue
            }
            return QMPSocket(connected: connection)
        }
        return nil
    }
}
