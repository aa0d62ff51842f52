import Foundation
import Testing
import TestSupport
@testable import Machines
#if canImport(Glibc)
import Glibc
#endif

/// What qemu sends on a QMP connection, read without qemu: the lines are qemu 7.2's own (from a
/// Debian guest under TCG), and the runner's connection is exercised with this process playing
/// qemu.
@Suite("QMP messages and the runner's connection")
struct QMPTests {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#

    static func shutdown(_ reason: String, guest: Bool) -> String {
        #"{"timestamp": {"seconds": 1796313188, "microseconds": 462360}, "event": "SHUTDOWN", "data": {"guest": \#(guest), "reason": "\#(reason)"}}"#
    }

    @Test func messagesParse() throws {
        #expect(try QMPMessage.parse(Self.greeting) == .greeting)
        #expect(try QMPMessage.parse(#"{"return": {}}"#) == .reply(id: nil, error: nil))
        #expect(try QMPMessage.parse(#"{"return": {}, "id": "cont"}"#) == .reply(id: "cont", error: nil))
        #expect(try QMPMessage.parse(#"{"id": "x", "error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}"#)
                == .reply(id: "x", error: "The command nosuch has not been found"))
        #expect(try QMPMessage.parse(#"{"timestamp": {"seconds": 1796313181, "microseconds": 218628}, "event": "POWERDOWN"}"#)
                == .event(QMPEvent(name: "POWERDOWN")))
        // Not QMP: an error, not a message that could be mistaken for one.
        for line in ["", "not json", "[1]", #"{"something": 1}"#, #"{"event": 7}"#] {
            #expect(throws: MachineError.self, "\(line)") { try QMPMessage.parse(line) }
        }
    }

    /// The SHUTDOWN event's reason decides what `imagectl vm` reports: a power off only for
    /// guest-shutdown, a reboot for guest-reset (qemu runs with -no-reboot), a termination for
    /// the host's quit or signal.
    @Test func shutdownReasonsAreToldApart() throws {
        let cases: [(String, Bool, QMPShutdownCause)] = [
            ("guest-shutdown", true, .guestPoweroff),
            ("guest-reset", true, .guestReset),
            ("guest-panic", true, .guestPanic),
            ("host-qmp-quit", false, .hostQuit),
            ("host-qmp-system-reset", false, .hostReset),
            ("host-signal", false, .hostSignal),
            ("host-ui", false, .hostUI),
            ("host-error", false, .other("host-error")),
            ("a-reason-from-a-newer-qemu", false, .other("a-reason-from-a-newer-qemu")),
        ]
        for (reason, guest, cause) in cases {
            #expect(try QMPMessage.parse(Self.shutdown(reason, guest: guest)) == .event(QMPEvent(name: "SHUTDOWN", shutdownCause: cause)), "\(reason)")
        }
        // A qemu before 4.0 sent SHUTDOWN without data: no cause, not a power off.
        #expect(try QMPMessage.parse(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN"}"#)
                == .event(QMPEvent(name: "SHUTDOWN", shutdownCause: nil)))
        // Only SHUTDOWN carries a cause (RESET has a reason too, with another meaning).
        #expect(try QMPMessage.parse(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESET", "data": {"guest": true, "reason": "guest-reset"}}"#)
                == .event(QMPEvent(name: "RESET")))
    }

    /// The runner's connection: qemu (here a thread of this process) connects to the listening
    /// socket, gets through the greeting and capabilities, and what it sends afterwards comes
    /// out of `readAvailable` as messages, then nil when it hangs up. A connection from another
    /// process is not taken for qemu's.
    @Test func monitorTakesQemusConnectionAndReadsEvents() throws {
        let scratch = try TemporaryDirectory(prefix: "qmp")
        let path = scratch.appending("monitor.sock")
        let monitor = try QMPMonitor(listeningAt: path)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)

        // Another process connects first (and holds the connection): it is not qemu.
        try Privileged.require(.tool("python3"))
        let intruder = Process()
        intruder.executableURL = URL(fileURLWithPath: try #require(Tool.path("python3")))
        intruder.arguments = ["-c", """
            import socket, time
            s = socket.socket(socket.AF_UNIX); s.connect('\(path)'); s.sendall(b'{"QMP": {}}\\n'); time.sleep(30)
            """]
        try intruder.run()
        defer { kill(intruder.processIdentifier, SIGKILL); intruder.waitUntilExit() }
        // Generous: a python start on a busy machine can take seconds; a pass costs nothing more.
        #expect(Poll.until(timeout: 60) { Self.connections(to: path) >= 1 })

        let fake = Thread {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
            }
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            func say(_ line: String) { _ = (line + "\n").withCString { Glibc.write(fd, $0, strlen($0)) } }
            say(QMPTests.greeting)
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = read(fd, &buffer, buffer.count) // qmp_capabilities
            say(#"{"return": {}, "id": "capabilities"}"#)
            _ = read(fd, &buffer, buffer.count) // system_powerdown
            say(#"{"timestamp": {"seconds": 1796313181, "microseconds": 218628}, "event": "POWERDOWN"}"#)
            say(#"{"return": {}, "id": "powerdown"}"#)
            say(QMPTests.shutdown("guest-shutdown", guest: true))
            close(fd)
        }
        fake.start()
        #expect(try monitor.connect(qemu: getpid(), timeout: 20) { true })
        // Connected: the listening socket's file is gone.
        #expect(!FileManager.default.fileExists(atPath: path))
        try monitor.send("system_powerdown", id: "powerdown")
        var received: [QMPMessage] = []
        let fd = try #require(monitor.descriptor)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 1000) > 0 else { continue }
            guard let messages = try monitor.readAvailable() else { break }
            received += messages
        }
        #expect(received == [.event(QMPEvent(name: "POWERDOWN")), .reply(id: "powerdown", error: nil),
                             .event(QMPEvent(name: "SHUTDOWN", shutdownCause: .guestPoweroff))])
        monitor.close()
    }

    /// A qemu that ends before it connects: `connect` gives up as soon as told, and `close`
    /// removes the socket file.
    @Test func monitorGivesUpWhenQemuIsGone() throws {
        let scratch = try TemporaryDirectory(prefix: "qmp")
        let path = scratch.appending("monitor.sock")
        let monitor = try QMPMonitor(listeningAt: path)
        let start = Date()
        #expect(try monitor.connect(qemu: getpid(), timeout: 60) { false } == false)
        #expect(Date().timeIntervalSince(start) < 5)
        monitor.close()
        #expect(!FileManager.default.fileExists(atPath: path))
        // A path too long for a Unix socket is an error, not a truncated name.
        #expect(throws: MachineError.self) { try QMPMonitor(listeningAt: "/tmp/" + String(repeating: "x", count: 120)) }
    }

    /// Connections to the socket at `path`, accepted or waiting to be (the kernel's view,
    /// /proc/net/unix: every socket bound to that path but the listening one, flag __SO_ACCEPTCON).
    static func connections(to path: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasSuffix(" " + path) && !$0.contains(" 00010000 ") }.count
    }
}
