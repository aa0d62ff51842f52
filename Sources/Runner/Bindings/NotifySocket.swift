import CShims
import Foundation
import Glibc

/// sd_notify(3) towards imagectl's own service manager: `$NOTIFY_SOCKET` of imagectl's
/// environment (a socket path or an "@abstract" name). Best effort, as sd_notify callers treat it:
/// a failed send is ignored. Without $NOTIFY_SOCKET every send is a no-op.
public struct ServiceNotifier: Sendable {
    public let address: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let value = environment["NOTIFY_SOCKET"] ?? ""
        address = value.isEmpty ? nil : value
    }

    /// Sends `message` (NAME=VALUE lines) as one datagram; false when it could not be sent.
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let address else { return false }
        var bytes = Array(message.utf8)
        let count = bytes.count
        return bytes.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: count) { img_notify_send(address, $0, count) == 0 }
            } ?? false
        }
    }
}

/// The container's notification socket (see CShimsNotify.h): made before the clone, bound by the
/// child at /run/host/notify, read here on a thread of its own until `stop`. Only messages from
/// the container are delivered: from its PID 1 (what nspawn accepts) or from another process in
/// its PID namespace (so a payload under --as-pid2 or a helper like systemd-notify counts too).
final class NotifyListener: @unchecked Sendable {
    // @unchecked: the descriptors are set once in init and closed only by `stop`, after the
    // reader thread has ended (it is joined through `finished`).
    let socket: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)
    private var running = false
    private var stopped = false

    private init(socket: Int32, wakeRead: Int32, wakeWrite: Int32) {
        self.socket = socket
        self.wakeRead = wakeRead
        self.wakeWrite = wakeWrite
    }

    /// socket(2) with SO_PASSCRED, and a pipe(2) that ends the reader.
    static func open() throws -> NotifyListener {
        let fd = img_notify_socket()
        guard fd >= 0 else { throw RunnerError.startFailed(step: "notify socket", errno: errno) }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            let code = errno
            close(fd)
            throw RunnerError.startFailed(step: "notify pipe", errno: code)
        }
        // Swift's Glibc lacks pipe2 (no _GNU_SOURCE): close-on-exec right after.
        for end in pipeFDs { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return NotifyListener(socket: fd, wakeRead: pipeFDs[0], wakeWrite: pipeFDs[1])
    }

    /// Reads messages until `stop`, handing each one from the container to `deliver` (on the
    /// reader thread). `leader`: the host PID of the container's PID 1.
    func start(leader: pid_t, deliver: @escaping @Sendable (NotifyMessage) -> Void) {
        running = true
        let socket = self.socket, wake = self.wakeRead, finished = self.finished
        let thread = Thread {
            defer { finished.signal() }
            var buffer = [CChar](repeating: 0, count: Int(IMG_NOTIFY_MESSAGE_MAX) + 1)
            while true {
                var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
                let ready = poll(&fds, 2, -1)
                if ready < 0 { if errno == EINTR { continue } else { return } }
                // Drain what is queued first: a STOPPING=1 sent right before the end still goes out.
                while true {
                    var sender: pid_t = 0
                    let n = buffer.withUnsafeMutableBufferPointer { img_notify_receive(socket, $0.baseAddress, $0.count, &sender) }
                    if n < 0 {
                        if errno == EAGAIN || errno == EWOULDBLOCK { break }
                        continue  // EMSGSIZE: dropped, as nspawn drops an oversized message
                    }
                    guard sender == leader || img_same_pid_namespace(sender, leader) != 0 else { continue }
                    let text = buffer.withUnsafeBufferPointer { raw in
                        String(decoding: raw.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    }
                    let message = NotifyMessage(parsing: text)
                    if !message.isEmpty { deliver(message) }
                }
                if fds[1].revents != 0 { return }
            }
        }
        thread.name = "imagectl-notify"
        thread.start()
    }

    /// Ends the reader (if started), waits for it, and closes the socket and the pipe. Safe to
    /// call more than once.
    func stop() {
        guard !stopped else { return }
        stopped = true
        if running {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
            finished.wait()
        }
        close(wakeWrite)
        close(wakeRead)
        close(socket)
    }
}
