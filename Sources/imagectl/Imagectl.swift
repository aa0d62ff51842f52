import ArgumentParser
import Foundation
import LinuxSystem
import Logging

/// The root command. Each verb is one type in Commands/<Group>/<Verb>.swift; this file only lists
/// them and turns errors into one `error:` line and an exit status.
///
/// Exit statuses: 0 success; 1 the operation failed (bad image, I/O error, verification failure);
/// 2 bad arguments or options (usage); 16 the image is busy (locked by another process).
/// Runner verbs return the payload's own status.
@main
struct Imagectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imagectl",
        abstract: "Import, store, dissect, verify and boot OS disk images.",
        discussion: """
            The image pool lives in /var/lib/machines unless --root or IMAGECTL_ROOT names \
            another directory. Exit status: 0 success, 1 failure, 2 usage error, 16 image busy. \
            --log-level=LEVEL before the verb sets which messages are printed: emerg, alert, \
            crit, err, warning, notice (the default), info, debug, or 0-7; $SYSTEMD_LOG_LEVEL \
            sets it too. Colour is off with $NO_COLOR or $SYSTEMD_COLORS=0. Other variables: \
            $IMAGECTL_LOCK_DIR, $IMAGECTL_RUNTIME_DIR, $IMAGECTL_MOUNT_RECORDS, \
            $IMAGECTL_TMP_MOUNTS, $IMAGECTL_VM_TMPDIR, $IMAGECTL_NETWORK_POOL (see the README).
            """,
        version: Diagnostics.version,
        subcommands: CommandRegistry.subcommands
    )

    static func main() async {
        // Before parsing: the parser only sees arguments already decoded with U+FFFD in place of
        // invalid bytes, which would name another file (SECURITY.md 27).
        if let (position, bytes) = ProcessArguments.firstInvalidUTF8() {
            Terminal.standardError("error: argument \(position) is not valid UTF-8: \(ProcessArguments.escaped(bytes))\n")
            Foundation.exit(2)
        }
        let arguments = Array(CommandLine.arguments.dropFirst())
        let level: Logger.Level
        do {
            let (chosen, warnings) = try Diagnostics.logLevel(arguments: arguments, environment: ProcessInfo.processInfo.environment)
            level = chosen
            for warning in warnings { Terminal.standardError("warning: \(warning)\n") }
        } catch {
            exit(reporting: error)
        }
        LoggingSystem.bootstrap { _ in PlainLogHandler(logLevel: level) }
        if let unknown = Diagnostics.unknownVerb(arguments: arguments) { exit(reporting: unknown) }
        // Before the parser, whose --version prints a fixed string: this one looks at the system.
        if arguments[..<(Diagnostics.verbIndex(in: arguments) ?? arguments.count)].contains("--version") {
            Terminal.standardOutput(Diagnostics.versionText())
            Foundation.exit(0)
        }
        do {
            // --log-level was applied above; the parser sees the rest (a root option there
            // would also be taken after the verb, where it would be silently ignored).
            var command = try parseAsRoot(BooleanFlagArgument.rewrite(JSONArgument.rewrite(Diagnostics.removingRootOption("--log-level", from: arguments))))
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(reporting: error)
        }
    }

    /// Prints one `error:` line (help and version requests print normally) and exits.
    static func exit(reporting error: Error) -> Never {
        if let exitCode = error as? ExitCode {
            Foundation.exit(exitCode.rawValue)
        }
        if let failure = error as? CommandFailure {
            Terminal.standardError("error: \(failure.message)\n")
            Foundation.exit(failure.status)
        }
        switch exitCode(for: error) {
        case .success:
            Self.exit(withError: error)  // --help, --version
        case .validationFailure:
            // Unknown option, missing argument, ValidationError from validate(): usage errors.
            var text = message(for: error)
            if text.contains("'--log-level'") { text += " (--log-level goes before the verb: imagectl --log-level=LEVEL VERB ...)" }
            Terminal.standardError("error: \(text)\n")
            Foundation.exit(2)
        default:
            Terminal.standardError("error: \(Diagnostics.message(for: error))\n")
            Foundation.exit(CommandFailure.status(for: error))
        }
    }
}
