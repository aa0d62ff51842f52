import Dispatch
import Foundation
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
    /// `started` runs with qemu's PID right after the start; if it throws, qemu is stopped and
    /// the error rethrown.
    static func run(_ arguments: [String], connectStandardInput: Bool,
                    started: (Int32) throws -> Void) throws -> Outcome {
        let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP]
        // Dispatch signal sources need the default action off; restored below.
        var previous: [Int32: sighandler_t?] = [:]
        for signo in forwarded { previous[signo] = signal(signo, SIG_IGN) }
        defer { for (signo, handler) in previous { signal(signo, handler) } }

        // Saved so that a qemu killed in raw mode does not leave the terminal unusable.
        var savedTerminal = termios()
        let haveTerminal = connectStandardInput && isatty(0) == 1 && tcgetattr(0, &savedTerminal) == 0
        defer { if haveTerminal { _ = tcsetattr(0, TCSANOW, &savedTerminal) } }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if !connectStandardInput { process.standardInput = FileHandle.nullDevice }
        let received = ReceivedSignal()
        let queue = DispatchQueue(label: "imagectl.vm.signals")
        var sources: [DispatchSourceSignal] = []
        for signo in forwarded {
            let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
            source.setEventHandler {
                received.set(signo)
                if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            }
            source.resume()
            sources.append(source)
        }
        defer { for source in sources { source.cancel() } }

        do {
            try process.run()
        } catch {
            throw VMError.setupFailed("cannot start \(arguments[0]): \(error.localizedDescription)")
        }
        do {
            try started(process.processIdentifier)
        } catch {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            throw error
        }
        process.waitUntilExit()
        let termination: Outcome.Termination = process.terminationReason == .uncaughtSignal
            ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
        return Outcome(termination: termination, receivedSignal: queue.sync { received.value })
    }

    /// Whether standard output is a terminal (for --background's colour).
    static var standardOutputIsTerminal: Bool { isatty(1) == 1 }
}

/// The signal seen by the dispatch handler; read after the queue is drained.
private final class ReceivedSignal: @unchecked Sendable {
    // @unchecked: written only on the signal queue, read through queue.sync on that same queue.
    var value: Int32?
    func set(_ signo: Int32) { if value == nil { value = signo } }
}
