import CShims
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs qemu as a child and waits for it: SIGTERM, SIGINT and SIGHUP to imagectl become SIGTERM
/// to qemu (qemu then exits cleanly and closes its files), and the terminal's settings are put
/// back afterwards even if qemu died without restoring them (it sets raw mode for stdio chardevs).
enum QEMUProcess {
    struct Outcome: Sendable {
        enum Termination: Sendable, Equatable { case exited(Int32), signaled(Int32) }
        var termination: Termination
        /// The signal imagectl received and forwarded, if any.
        var receivedSignal: Int32?
    }

    /// Starts `arguments` (program first). `connectStandardInput` false gives qemu /dev/null.
    /// `console`, when given, is a pty slave that becomes qemu's standard input and output (the
    /// caller relays the master); it is closed here once qemu has it.
    /// `started` runs with qemu's PID right after the start; if it throws, qemu is stopped and
    /// the error rethrown.
    static func run(_ arguments: [String], connectStandardInput: Bool, console: Int32? = nil,
                    started: (Int32) throws -> Void) throws -> Outcome {
        let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP]
        // A plain handler rather than a dispatch signal source: libdispatch blocks the signal in
        // the thread that registers it (it reads a signalfd), and a blocked mask is inherited
        // by qemu, whose SIGTERM then stays pending forever. The spawning thread also unblocks
        // them, in case the caller's mask blocks them.
        qemuLeader.store(0, ordering: .sequentiallyConsistent)
        receivedSignal.store(0, ordering: .sequentiallyConsistent)
        var previous: [Int32: sigaction] = [:]
        for signo in forwarded {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = qemuForwardingHandler
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            var old = sigaction()
            sigaction(signo, &action, &old)
            previous[signo] = old
        }
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signo in forwarded { sigaddset(&unblock, signo) }
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
        // A signal that came before the PID was known is forwarded now.
        if receivedSignal.load(ordering: .sequentiallyConsistent) != 0 { kill(pid, SIGTERM) }
        do {
            try started(pid)
        } catch {
            kill(pid, SIGTERM)
            process.waitUntilExit()
            throw error
        }
        process.waitUntilExit()
        qemuLeader.store(0, ordering: .sequentiallyConsistent)
        let termination: Outcome.Termination = process.terminationReason == .uncaughtSignal
            ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
        let signo = receivedSignal.load(ordering: .sequentiallyConsistent)
        return Outcome(termination: termination, receivedSignal: signo == 0 ? nil : signo)
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

/// qemu's PID while it runs (0: none), read by the signal handler.
private let qemuLeader = Atomic<Int32>(0)
/// The first forwarded signal imagectl received (0: none).
private let receivedSignal = Atomic<Int32>(0)

/// Async-signal-safe: atomics and kill(2) only.
private func qemuForwardingHandler(_ signo: Int32) {
    _ = receivedSignal.compareExchange(expected: 0, desired: signo, ordering: .sequentiallyConsistent)
    let pid = qemuLeader.load(ordering: .sequentiallyConsistent)
    if pid > 0 { kill(pid, SIGTERM) }
}
