import Glibc

/// A connected AF_UNIX stream socket to qemu's QMP server, read line by line (QMP sends one
/// JSON object per line), every read bounded by a timeout so that a wedged qemu cannot hang
/// `imagectl stop`.
final class QMPSocket {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws(MachineError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw .qmp("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
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

    deinit { close(fd) }

    func send(_ line: String) throws(MachineError) {
        var bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
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
