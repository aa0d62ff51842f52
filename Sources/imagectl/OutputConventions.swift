import ArgumentParser
import Foundation
import ProgressReport

/// `--json=short|pretty|off` as systemd spells it. A bare `--json` means pretty, as in systemd;
/// ArgumentParser has no option whose value may be left out, so `JSONArgument.rewrite` turns a
/// bare `--json` into `--json=pretty` before parsing.
enum JSONMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    case short, pretty, off
}

/// systemd's output options that shape what a verb prints (see OutputOptions for -q).
struct FormatOptions: ParsableArguments {
    @Option(name: .customLong("json"), help: ArgumentHelp(
        "Print JSON: short (one line), pretty (indented; a bare --json means pretty) or off. Keys are the table's columns.",
        valueName: "short|pretty|off"))
    var jsonMode: JSONMode = .off

    @Flag(name: .customLong("no-pager"), help: "Accepted for systemd compatibility; imagectl never pages.")
    var noPager = false

    @Flag(name: .customLong("no-legend"), help: "Print no column headers, no footer and no \"No ...\" line.")
    var noLegend = false

    @Flag(name: [.customShort("l"), .customLong("full")], help: "Do not ellipsize table cells to the terminal's width.")
    var full = false

    var json: Bool { jsonMode != .off }
    var table: Output.TableStyle { Output.TableStyle(legend: !noLegend, full: full) }
}

enum JSONArgument {
    /// Verbs whose trailing arguments are a payload's own command line: left untouched.
    static let passthroughVerbs: Set<String> = ["run", "shell", "login"]

    /// A bare `--json` (before any `--`) becomes `--json=pretty`.
    static func rewrite(_ arguments: [String]) -> [String] {
        if let verb = arguments.first, passthroughVerbs.contains(verb) { return arguments }
        var result: [String] = []
        var passthrough = false
        for argument in arguments {
            if argument == "--" { passthrough = true }
            result.append(!passthrough && argument == "--json" ? "--json=pretty" : argument)
        }
        return result
    }
}

/// vmspawn's and nspawn's switches that also take a boolean (`--pass-ssh-key=yes`): ArgumentParser's
/// flags take no value, so before parsing `--FLAG=yes` (1, true, on, ...) becomes `--FLAG` and
/// `--FLAG=no` (0, false, off, ...) is dropped; any other value is a usage error.
enum BooleanFlagArgument {
    /// The switches of each verb that take a value in the systemd tools' manuals.
    static let flags: [String: Set<String>] = [
        "vm": ["--pass-ssh-key", "--ephemeral", "--network-user-mode", "--network-tap", "--quiet", "--read-only"],
    ]

    static func rewrite(_ arguments: [String]) throws -> [String] {
        guard let verb = arguments.first, let names = flags[verb] else { return arguments }
        var result: [String] = []
        var passthrough = false
        for argument in arguments {
            if argument == "--" { passthrough = true }
            guard !passthrough, argument.hasPrefix("--"), let equals = argument.firstIndex(of: "="),
                  names.contains(String(argument[..<equals])) else {
                result.append(argument)
                continue
            }
            let name = String(argument[..<equals])
            let value = String(argument[argument.index(after: equals)...])
            switch value.lowercased() {
            case "1", "yes", "y", "true", "t", "on": result.append(name)
            case "0", "no", "n", "false", "f", "off": break
            default: throw ValidationError("invalid value '\(value)' for \(name): expected yes or no")
            }
        }
        return result
    }
}

extension OutputOptions {
    var json: Bool { format.json }
    var jsonMode: JSONMode { format.jsonMode }
    var table: Output.TableStyle { format.table }

    /// Prints `value` as JSON in the chosen form.
    func printJSON<T: Encodable>(_ value: T) throws {
        try Output.printJSON(value, pretty: format.jsonMode != .short)
    }

    /// The progress reporter for a long operation, per the conventions:
    /// - `-q`: silent;
    /// - `--json`: JSON lines, on standard output when the events are the verb's output
    ///   (`eventsAreOutput`: import, pull, export to a file), else on standard error (the verb's
    ///   own JSON document owns standard output);
    /// - standard error a terminal: the bar there;
    /// - otherwise each phase's final line, on standard output unless that carries data
    ///   (`outputCarriesData`: export to "-"), then on standard error.
    func progressReporter(eventsAreOutput: Bool, outputCarriesData: Bool = false) -> ProgressReporter {
        let toStandardOutput = !outputCarriesData
        if quiet { return .silent }
        if json {
            return ProgressReporter(style: .json) { text in
                if eventsAreOutput && toStandardOutput { Terminal.standardOutput(text) } else { Terminal.standardError(text) }
            }
        }
        if Terminal.errorIsTerminal {
            let environment = ProcessInfo.processInfo.environment["COLUMNS"].flatMap { Int($0) }
            return ProgressReporter(style: .bar, columns: { TerminalWidth.columns(of: 2, environmentColumns: environment) }) {
                Terminal.standardError($0)
            }
        }
        return ProgressReporter(style: .lines) { text in
            if toStandardOutput { Terminal.standardOutput(text) } else { Terminal.standardError(text) }
        }
    }

    /// A status line ("Imported ...", "mounted ..."): not with -q.
    func status(_ line: String) {
        if !quiet { Terminal.standardOutput(line + "\n") }
    }

    /// A note on standard error: not with -q (warnings and errors are printed regardless).
    func note(_ line: String) {
        if !quiet { Terminal.standardError(line + "\n") }
    }
}
