import CShims
import Glibc
import SystemPackage

/// The caller's terminal in raw mode (cfmakeraw(3), as nspawn's ptyfwd sets it); nothing when
/// the descriptor is not a terminal.
final class RawTerminal {
    private let fd: Int32
    private var saved: termios?

    init(_ descriptor: FileDescriptor) {
        fd = descriptor.rawValue
        var current = termios()
        guard isatty(fd) == 1, tcgetattr(fd, &current) == 0 else { return }
        saved = current
        var raw = current
        cfmakeraw(&raw)
        // Keep output post-processing so that "\n" from a process writing to a pipe still
        // starts a new line; the pty inside does its own.
        raw.c_oflag = current.c_oflag
        _ = tcsetattr(fd, TCSANOW, &raw)
    }

    func restore() {
        guard var saved else { return }
        _ = tcsetattr(fd, TCSADRAIN, &saved)
        self.saved = nil
    }
}

/// poll(2)/read(2)/write(2) loop of ConsoleRelay.
enum ConsoleIO {
    static func copyWindowSize(from input: Int32, to console: Int32) {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        if img_terminal_size(input, &rows, &columns) == 0 { _ = img_set_terminal_size(console, rows, columns) }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Writes all of `count` bytes; false when the descriptor is gone.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = write(fd, buffer + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, 1000)
                    continue
                }
                return false
            }
            done += n
        }
        return true
    }

    static func relay(_ relay: ConsoleRelay) throws -> ConsoleRelay.Ending {
        let console = relay.console.rawValue
        let input = relay.input.rawValue
        let output = relay.output.rawValue
        let winch = relay.forwardWindowSize ? img_winch_pipe() : -1
        if relay.forwardWindowSize { copyWindowSize(from: input, to: console) }
        var escape = ConsoleRelay.EscapeDetector()
        var inputOpen = !relay.readOnly
        var buffer = [UInt8](repeating: 0, count: 16384)
        let leader = relay.leaderExit?.rawValue ?? -1
        // With a leader to watch, the console is read without blocking (to drain it at the end)
        // and a hangup only pauses it: a master whose slave nobody holds polls as hung up at
        // once, so it is left out of poll for 20 ms at a time until a process opens the slave.
        if leader >= 0 { _ = fcntl(console, F_SETFL, fcntl(console, F_GETFL) | O_NONBLOCK) }
        var consoleHungUp = false
        while true {
            var fds = [
                pollfd(fd: consoleHungUp ? -1 : console, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? input : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: winch, events: Int16(POLLIN), revents: 0),
                pollfd(fd: leader, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, nfds_t(fds.count), consoleHungUp ? 20 : -1)
            if ready < 0 {
                if errno == EINTR { continue }
                throw MachineError.console(call: "poll", errno: errno)
            }
            if ready == 0 {
                consoleHungUp = false
                continue
            }
            if fds[3].revents != 0 {
                // The leader exited: what it and its namespace wrote is still in the pty.
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(console, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0, buffer.withUnsafeBytes({ writeAll(output, $0.baseAddress!, n) }) else { break }
                }
                return .hangup
            }
            if fds[2].revents != 0 {
                while buffer.withUnsafeMutableBytes({ read(winch, $0.baseAddress, $0.count) }) > 0 {}
                copyWindowSize(from: input, to: console)
            }
            if fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(console, $0.baseAddress, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                // EIO: no process holds the pty's slave (for now, or any more).
                if n <= 0 {
                    if leader >= 0 {
                        consoleHungUp = true
                        continue
                    }
                    return .hangup
                }
                let ok = buffer.withUnsafeBytes { writeAll(output, $0.baseAddress!, n) }
                if !ok { return .hangup }
            }
            if fds[1].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 {
                    inputOpen = false
                    continue
                }
                if escape.feed(buffer[0..<n], now: monotonicNanoseconds()) { return .escape }
                _ = buffer.withUnsafeBytes { writeAll(console, $0.baseAddress!, n) }
            }
        }
    }
}
