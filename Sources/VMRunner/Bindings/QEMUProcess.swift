import CShims
import Foundation
import Machines
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs qemu as a child and supervises it through the runner's own QMP connection
/// (`QMPMonitor`): the SHUTDOWN event says how the guest ended; SIGTERM, SIGINT and SIGHUP to
/// imagectl press the guest's ACPI power button (QMP system_powerdown) and `quit` qemu when it
/// has not ended after the stop timeout, or at once on a second signal (what `imagectl stop`
/// does). The terminal's settings are put back afterwards even if qemu died without restoring
/// them (it sets raw mode for stdio chardevs).
enum QEMUProcess {
    struct Outcome: Sendable {
        enum Termination: Sendable, Equatable { case exited(Int32), signaled(Int32) }
        var termination: Termination
        /// The cause in qemu's SHUTDOWN event; nil when qemu sent none (it failed, was killed,
        /// or never connected).
        var shutdown: QMPShutdownCause?
        /// The first SIGTERM/SIGINT/SIGHUP imagectl received, if any.
        var receivedSignal: Int32?
        /// What the stop that signal began came to.
        var stop: StopProgress = .none
    }

    /// How far a stop begun by a signal to imagectl went.
    enum StopProgress: Sendable, Equatable {
        case none
        /// The power button was pressed (and qemu ended before anything more was needed).
        case poweroffRequested
        /// The guest had not ended when the timeout passed: qemu was told to quit.
        case quitAfterTimeout(Double)
        /// A second signal came: qemu was told to quit at once.
        case quitOnSecondSignal
        /// The signal came before the guest started running: qemu was told to quit.
        case quitBeforeStart
    }

    /// Starts `arguments` (program first), which connect qemu to `monitor` and pause it (-S).
    /// `connectStandardInput` false gives qemu /dev/null. `console`, when given, is a pty slave
    /// that becomes qemu's standard input and output (the caller relays the master); it is
    /// closed here once qemu has it. `started` runs with qemu's PID right after the start,
    /// before the guest runs; if it throws, qemu is stopped and the error rethrown.
    static func run(_ arguments: [String], connectStandardInput: Bool, console: Int32? = nil,
                    monitor: QMPMonitor, stopTimeout: Double, started: (Int32) throws -> Void) throws -> Outcome {
        let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]
        // The handler only writes the signal's number to this pipe (async-signal-safe); the
        // supervision loop below reads it beside qemu's QMP connection. A plain handler rather
        // than a dispatch signal source: libdispatch blocks the signal in the thread that
        // registers it, and a blocked mask is inherited by qemu.
        var pipeFDs: [Int32] = [-1, -1]
        // (pipe2 is not in Swift's Glibc; nothing is started before the flags are set.)
        guard pipe(&pipeFDs) == 0 else {
            throw VMError.setupFailed("pipe: \(String(cString: strerror(errno)))")
        }
        for fd in pipeFDs {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        signalPipe.store(pipeFDs[1], ordering: .sequentiallyConsistent)
        defer { signalPipe.store(-1, ordering: .sequentiallyConsistent) }
        var previous: [Int32: sigaction] = [:]
        for signo in handled {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = stopSignalHandler
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            var old = sigaction()
            sigaction(signo, &action, &old)
            previous[signo] = old
        }
        // A caller may start imagectl with these signals blocked (the mask is inherited over
        // exec): unblock them in this thread, which waits for qemu.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signo in handled { sigaddset(&unblock, signo) }
        var oldMask = sigset_t()
        pthread_sigmask(SIG_UNBLOCK, &unblock, &oldMask)
        defer {
            pthread_sigmask(SIG_SETMASK, &oldMask, nil)
            for (signo, old) in previous {
                var restore = old
                sigaction(signo, &restore, nil)
            }
        }

        // Saved so that a qemu killed in raw mode does not leave the terminal unusable.
        var savedTerminal = termios()
        let haveTerminal = console == nil && connectStandardInput && isatty(0) == 1 && tcgetattr(0, &savedTerminal) == 0
        defer { if haveTerminal { _ = tcsetattr(0, TCSANOW, &savedTerminal) } }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if let console {
            let handle = FileHandle(fileDescriptor: console, closeOnDealloc: false)
            process.standardInput = handle
            process.standardOutput = handle
        } else if !connectStandardInput {
            process.standardInput = FileHandle.nullDevice
        }
        do {
            try process.run()
        } catch {
            if let console { close(console) }
            throw VMError.setupFailed("cannot start \(arguments[0]): \(error.localizedDescription)")
        }
        // Only qemu holds the slave now, so the relay sees a hang-up when qemu ends.
        if let console { close(console) }
        let pid = process.processIdentifier
        qemuLeader.store(pid, ordering: .sequentiallyConsistent)
        defer { qemuLeader.store(0, ordering: .sequentiallyConsistent) }
        /// Ends a qemu that must not go on (the guest never ran, so nothing is lost).
        func abandon() {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        do {
            try started(pid)
        } catch {
            abandon()
            throw error
        }
        // qemu connects while it starts; a qemu that fails (bad option, missing file) exits
        // instead, and its status and message are what the user gets.
        let connected: Bool
        do {
            connected = try monitor.connect(qemu: pid, timeout: 120) { process.isRunning }
        } catch {
            abandon()
            throw VMError.setupFailed("qemu's monitor connection: \(error)")
        }
        guard connected else {
            if process.isRunning {
                abandon()
                throw VMError.setupFailed("qemu did not connect to its monitor socket \(monitor.path) within 120 s")
            }
            process.waitUntilExit()
            return Outcome(termination: termination(of: process), shutdown: nil,
                           receivedSignal: firstSignal(pipeFDs[0]), stop: .none)
        }
        var outcome: Outcome
        do {
            outcome = try supervise(process, monitor: monitor, signals: pipeFDs[0], stopTimeout: stopTimeout)
        } catch {
            // No qemu outlives its imagectl, not even a paused one whose `cont` failed.
            abandon()
            throw error
        }
        process.waitUntilExit()
        outcome.termination = termination(of: process)
        return outcome
    }

    private static func termination(of process: Process) -> Outcome.Termination {
        process.terminationReason == .uncaughtSignal ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
    }

    /// The signals written to the pipe since it was last read.
    private static func drain(_ pipe: Int32) -> [Int32] {
        var signals: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(pipe, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return signals }
            signals += buffer[0..<n].map { Int32($0) }
        }
    }

    private static func firstSignal(_ pipe: Int32) -> Int32? { drain(pipe).first }

    /// From `cont` until qemu closes the connection (it exits): reads events and signals, and
    /// carries out a stop. qemu is paused (-S) until then, so a signal that came before is
    /// answered by `quit`: a guest that never ran has nothing to power off.
    private static func supervise(_ process: Process, monitor: QMPMonitor, signals: Int32, stopTimeout: Double) throws -> Outcome {
        let pid = process.processIdentifier
        var outcome = Outcome(termination: .exited(0))
        var quitSent = false
        var quitDeadline: Double?
        var killDeadline: Double?
        func quit(_ progress: StopProgress) {
            guard !quitSent else { return }
            quitSent = true
            outcome.stop = progress
            quitDeadline = nil
            // quit closes the disk images properly; should qemu not answer, SIGKILL in 10 s.
            if (try? monitor.send("quit", id: "quit")) == nil { kill(pid, SIGKILL) }
            killDeadline = MonotonicTime.now + 10
        }
        func handle(_ received: [Int32]) {
            for signo in received {
                if outcome.receivedSignal == nil {
                    outcome.receivedSignal = signo
                    outcome.stop = .poweroffRequested
                    if (try? monitor.send("system_powerdown", id: "powerdown")) == nil {
                        quit(.quitOnSecondSignal)
                    } else {
                        quitDeadline = MonotonicTime.now + stopTimeout
                    }
                } else {
                    quit(.quitOnSecondSignal)
                }
            }
        }
        let early = drain(signals)
        if let first = early.first {
            outcome.receivedSignal = first
            quit(.quitBeforeStart)
        } else {
            try monitor.send("cont", id: "cont")
        }
        guard let connection = monitor.descriptor else { return outcome }
        while true {
            let now = MonotonicTime.now
            if let deadline = quitDeadline, now >= deadline { quit(.quitAfterTimeout(stopTimeout)) }
            if let deadline = killDeadline, now >= deadline {
                kill(pid, SIGKILL)
                killDeadline = nil
            }
            // At most a second between looks at qemu itself: should qemu's end ever not close
            // the connection (a leaked descriptor), the loop still ends.
            var wait = 1.0
            if let deadline = quitDeadline { wait = min(wait, deadline - now) }
            if let deadline = killDeadline { wait = min(wait, deadline - now) }
            var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: connection, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, Int32(max(wait, 0) * 1000) + 1)
            if ready < 0 && errno != EINTR { throw VMError.setupFailed("poll: \(String(cString: strerror(errno)))") }
            if fds[0].revents != 0 { handle(drain(signals)) }
            if fds[1].revents != 0 {
                let messages: [QMPMessage]?
                do { messages = try monitor.readAvailable() } catch { messages = nil }
                guard let messages else { break }
                for case .event(let event) in messages where event.name == "SHUTDOWN" && outcome.shutdown == nil {
                    outcome.shutdown = event.shutdownCause ?? .other("none")
                }
            }
            if ready == 0 && !process.isRunning { break }
        }
        monitor.close()
        return outcome
    }

    /// Sends `signal` to qemu while it runs (the console's ^]^]^] escape uses SIGKILL).
    static func signalQEMU(_ signal: Int32) {
        let pid = qemuLeader.load(ordering: .sequentiallyConsistent)
        if pid > 0 { kill(pid, signal) }
    }

    /// Whether standard input is a terminal (the interactive console then gets a pty).
    static var standardInputIsTerminal: Bool { isatty(0) == 1 }

    /// A new pseudo-terminal pair for qemu's serial console (img_open_pty: posix_openpt and
    /// friends), both ends close-on-exec (qemu gets the slave as its stdio through dup2).
    static func openPseudoTerminal() throws -> (master: Int32, slave: Int32) {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard img_open_pty(&master, &slave) == 0 else {
            throw VMError.setupFailed("cannot open a pty for the console: \(String(cString: strerror(errno)))")
        }
        return (master, slave)
    }

    static func closeDescriptor(_ fd: Int32) { close(fd) }

    /// Whether standard output is a terminal (for --background's colour).
    static var standardOutputIsTerminal: Bool { isatty(1) == 1 }
}

/// qemu's PID while it runs (0: none), for the console's escape.
private let qemuLeader = Atomic<Int32>(0)
/// The write end of the signal pipe while qemu runs (-1: none), read by the signal handler.
private let signalPipe = Atomic<Int32>(-1)

/// Async-signal-safe: an atomic load and write(2) only.
private func stopSignalHandler(_ signo: Int32) {
    let fd = signalPipe.load(ordering: .sequentiallyConsistent)
    guard fd >= 0 else { return }
    let saved = errno
    var byte = UInt8(truncatingIfNeeded: signo)
    _ = write(fd, &byte, 1)
    errno = saved
}

/// CLOCK_MONOTONIC in seconds: deadlines that a changed wall clock does not move.
enum MonotonicTime {
    static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
