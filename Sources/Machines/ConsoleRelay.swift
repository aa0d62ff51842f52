import Foundation
import SystemPackage

/// Relays a console (the master of a container's pty, or a VM's serial line) to imagectl's own
/// terminal, as systemd's ptyfwd does for nspawn and vmspawn: the caller's terminal in raw mode
/// while it runs (restored on every return path), the window size copied to the console at the
/// start and on every SIGWINCH, and `^]` pressed three times within one second ends the relay
/// with `.escape` (the caller then kills the machine).
/// Sendable: every stored property is an immutable `let` of a Sendable type, so the relay can
/// run on a thread of its own (as `imagectl vm` does) while its creator waits for the machine.
public final class ConsoleRelay: Sendable {
    public enum Ending: Equatable, Sendable {
        /// The other side closed (every process holding the pty's slave ended).
        case hangup
        /// `^]` was pressed three times within a second.
        case escape
    }

    /// The byte `^]` sends (GS, 0x1d).
    public static let escapeByte: UInt8 = 0x1d

    let console: FileDescriptor
    let input: FileDescriptor
    let output: FileDescriptor
    let forwardWindowSize: Bool
    /// Output only: nothing is read from `input`, whose terminal (if any) keeps its mode.
    let readOnly: Bool
    /// A pidfd of the machine's leader. With it, a hangup of the console (no process holds the
    /// pty's slave for a moment, as when systemd closes and reopens /dev/console) does not end
    /// the relay (nspawn's ptyfwd ignores vhangup likewise); the leader's exit does, once the
    /// console's remaining output is copied.
    let leaderExit: FileDescriptor?

    /// - Parameters:
    ///   - console: the pty master (or any bidirectional descriptor); not closed by the relay.
    ///   - input, output: the user's side, default imagectl's standard input and output.
    ///   - forwardWindowSize: copy the input terminal's size to `console` (a pty master).
    ///   - readOnly: relay the console's output only (nspawn's --console=read-only); then there
    ///     is no escape either: the caller's signals end the machine.
    ///   - leaderExit: a pidfd whose process's exit ends the relay (and console hangups do not);
    ///     nil: the relay ends at the first hangup.
    public init(console: FileDescriptor, input: FileDescriptor = .standardInput, output: FileDescriptor = .standardOutput,
                forwardWindowSize: Bool = true, readOnly: Bool = false, leaderExit: FileDescriptor? = nil) {
        self.console = console
        self.input = input
        self.output = output
        self.forwardWindowSize = forwardWindowSize && !readOnly
        self.readOnly = readOnly
        self.leaderExit = leaderExit
    }

    /// The message nspawn prints before a relay starts.
    public static let hint = "Press ^] three times within 1s to kill container."

    /// Relays until the console hangs up or the escape is pressed.
    public func run() throws -> Ending {
        if readOnly { return try ConsoleIO.relay(self) }
        let terminal = RawTerminal(input)
        defer { terminal.restore() }
        let ending = try ConsoleIO.relay(self)
        if ending == .escape { resetTerminalState() }
        return ending
    }

    /// A machine killed by the escape may have stopped in the middle of an escape sequence (a
    /// colour, say): the user's terminal would then take the caller's next words as the rest of
    /// it and swallow them. ESC starts a new sequence, which abandons any unfinished one, and
    /// "[0m" ends it as a reset of the colours the machine left set.
    func resetTerminalState() {
        guard isatty(output.rawValue) == 1 else { return }
        _ = try? output.writeAll(Array("\u{1b}[0m".utf8))
    }

    /// Tracks `^]` presses: true on the third within one second.
    struct EscapeDetector {
        var presses: [UInt64] = []

        /// `now` in nanoseconds of a monotonic clock.
        mutating func feed(_ bytes: some Sequence<UInt8>, now: UInt64) -> Bool {
            for byte in bytes {
                guard byte == ConsoleRelay.escapeByte else {
                    presses.removeAll()
                    continue
                }
                presses.append(now)
                if presses.count > 3 { presses.removeFirst() }
                if presses.count == 3, now - presses[0] <= 1_000_000_000 { return true }
            }
            return false
        }
    }
}
