import ArgumentParser
import Dissect
import Foundation
import ImageStore
import LinuxSystem
import Logging
import Pull
import Machines
import VMRunner

/// What the CLI says about itself before and around a verb: the log level (--log-level=,
/// SYSTEMD_LOG_LEVEL, IMAGECTL_LOG), log lines without swift-log's time stamps, an unknown
/// verb, `--version` with the build's run-time features, and colour (NO_COLOR, SYSTEMD_COLORS).
enum Diagnostics {
    // MARK: Log level

    /// systemd's level names and numbers (emerg=0 ... debug=7) and swift-log's names.
    static func parseLevel(_ text: String) -> Logger.Level? {
        switch text.lowercased() {
        case "0", "emerg", "1", "alert", "2", "crit", "critical": .critical
        case "3", "err", "error": .error
        case "4", "warning", "warn": .warning
        case "5", "notice": .notice
        case "6", "info": .info
        case "7", "debug": .debug
        case "trace": .trace
        default: nil
        }
    }

    static let levelNames = "emerg, alert, crit, err, warning, notice, info, debug (or 0-7), trace"

    /// The level for this run: --log-level= (before the verb, as the root option), else
    /// SYSTEMD_LOG_LEVEL, else IMAGECTL_LOG, else notice. Throws a usage error for a bad option
    /// value; a bad environment value is ignored with a warning, as systemd does.
    static func logLevel(arguments: [String], environment: [String: String]) throws -> (Logger.Level, [String]) {
        if let last = arguments.last, last == "--log-level", verbIndex(in: arguments) == nil {
            throw CommandFailure(message: "--log-level needs a value (\(levelNames))", status: 2)
        }
        if let given = rootOptionValue("--log-level", in: arguments) {
            guard let level = parseLevel(given) else {
                throw CommandFailure(message: "--log-level: '\(given)' is not a log level (\(levelNames))", status: 2)
            }
            return (level, [])
        }
        var warnings: [String] = []
        for variable in ["SYSTEMD_LOG_LEVEL", "IMAGECTL_LOG"] {
            guard let value = environment[variable], !value.isEmpty else { continue }
            if let level = parseLevel(value) { return (level, warnings) }
            warnings.append("ignoring \(variable)=\(value): not a log level (\(levelNames))")
        }
        return (.notice, warnings)
    }

    /// The root options that take a value (written before the verb).
    static let rootOptionsWithValue: Set<String> = ["--log-level", "--generate-completion-script"]

    /// The value of a root option (`--name=V` or `--name V`) given before the verb.
    static func rootOptionValue(_ name: String, in arguments: [String]) -> String? {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" || !argument.hasPrefix("-") { return nil }
            if argument.hasPrefix(name + "=") { return String(argument.dropFirst(name.count + 1)) }
            if argument == name { return index + 1 < arguments.count ? arguments[index + 1] : nil }
            index += rootOptionsWithValue.contains(argument) ? 2 : 1
        }
        return nil
    }

    /// `arguments` without the root option `name` (and its value) given before the verb.
    static func removingRootOption(_ name: String, from arguments: [String]) -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" || !argument.hasPrefix("-") { return result + arguments[index...] }
            if argument.hasPrefix(name + "=") {
                index += 1
            } else if argument == name {
                index += 2
            } else {
                result.append(argument)
                index += 1
            }
        }
        return result
    }

    /// The first argument that is not a root option (or its value): the verb, or nil.
    static func verbIndex(in arguments: [String]) -> Int? {
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" { return nil }
            if !argument.hasPrefix("-") { return index }
            index += rootOptionsWithValue.contains(argument) ? 2 : 1
        }
        return nil
    }

    // MARK: Unknown verbs

    /// Every verb name (with aliases) and `help`.
    static var verbNames: [String] {
        var names = ["help"]
        for command in CommandRegistry.subcommands {
            let configuration = command.configuration
            names.append(configuration.commandName ?? command._commandName)
            names += configuration.aliases
        }
        return names
    }

    /// A usage error for an unknown verb, or for `help` of one, naming the nearest verb; nil
    /// when the verb is known (the parser takes it from there).
    static func unknownVerb(arguments: [String]) -> CommandFailure? {
        // The parser's own entry points: completion requests from the shell scripts, the tool
        // description that generate-manual reads.
        if let first = arguments.first, first.hasPrefix("---") || first == "--experimental-dump-help" { return nil }
        guard let index = verbIndex(in: arguments) else { return nil }
        // An option the root does not have (`imagectl --root DIR list`): the parser says so,
        // rather than taking its value for a verb.
        let rootFlags: Set<String> = ["--version", "-h", "--help"]
        var position = 0
        while position < index {
            let argument = arguments[position]
            if rootOptionsWithValue.contains(argument) {
                position += 2
            } else if rootFlags.contains(argument) || rootOptionsWithValue.contains(where: { argument.hasPrefix($0 + "=") }) {
                position += 1
            } else {
                return nil
            }
        }
        let names = verbNames
        let verb = arguments[index]
        if !names.contains(verb) {
            return CommandFailure(message: "unknown verb '\(verb)'\(suggestion(for: verb, among: names)); 'imagectl --help' lists the verbs", status: 2)
        }
        if verb == "help", index + 1 < arguments.count {
            let topic = arguments[index + 1]
            if !topic.hasPrefix("-"), !names.contains(topic) {
                return CommandFailure(message: "no help for unknown verb '\(topic)'\(suggestion(for: topic, among: names))", status: 2)
            }
        }
        return nil
    }

    /// " (did you mean 'list'?)" for the closest name within a few edits (or of which the word
    /// is a prefix), else "".
    static func suggestion(for word: String, among names: [String]) -> String {
        let candidates = names.filter { $0 != "help" }
        if let prefixed = candidates.filter({ $0.hasPrefix(word) }).min(by: { $0.count < $1.count }), word.count >= 2 {
            return " (did you mean '\(prefixed)'?)"
        }
        let scored = candidates.map { ($0, editDistance(word, $0)) }.min { $0.1 < $1.1 }
        guard let (name, distance) = scored, distance <= max(2, word.count / 3) else { return "" }
        return " (did you mean '\(name)'?)"
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    // MARK: --version

    static let version = "0.1.0"

    /// The version and what this build finds at run time, in systemd's `+FEATURE -FEATURE`
    /// form; a missing feature is followed by why, and what needs it.
    static func versionText() -> String {
        let features: [(String, String?, String)] = [
            ("CURL", Puller.libcurlUnavailableReason, "pull-raw, pull-tar, pull-oci"),
            ("LIBCRYPTSETUP", DMVerity.libcryptsetupUnavailableReason, "kernel dm-verity for mount, run -i and vm"),
            ("DEVICE_MAPPER", DMVerity.isAvailable ? nil : "the kernel has no device-mapper (/dev/mapper/control, /proc/misc)",
             "kernel dm-verity; without it verity is checked in userspace"),
            ("BTRFS", btrfsUnavailableReason, "snapshots for clone and import-fs, set-limit"),
        ]
        var text = "imagectl \(version)\n"
        text += features.map { ($0.1 == nil ? "+" : "-") + $0.0 }.joined(separator: " ") + "\n"
        for (name, reason, use) in features {
            if let reason { text += "  -\(name): \(reason) (used by \(use))\n" }
        }
        return text
    }

    /// Why this kernel cannot mount btrfs, or nil: it is listed in /proc/filesystems, or its
    /// module is loaded or installed for the running kernel (it loads on first mount).
    static var btrfsUnavailableReason: String? {
        let filesystems = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
        if filesystems.split(separator: "\n").contains(where: { $0.hasSuffix("\tbtrfs") }) { return nil }
        if FileManager.default.fileExists(atPath: "/sys/module/btrfs") { return nil }
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let modules = (try? String(contentsOfFile: "/lib/modules/\(release)/modules.dep", encoding: .utf8)) ?? ""
        if modules.contains("/btrfs.ko") { return nil }
        return "the kernel has no btrfs (/proc/filesystems, /lib/modules/\(release))"
    }

    // MARK: Colour

    /// Whether to colour what goes to `fd`, as systemd decides: SYSTEMD_COLORS (a boolean, or
    /// 16/256/24bit for yes) wins; else NO_COLOR (any value) or TERM=dumb turn colour off; else
    /// only on a terminal.
    static func coloursEnabled(for fd: Int32, environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if let value = environment["SYSTEMD_COLORS"]?.lowercased() {
            switch value {
            case "0", "no", "n", "false", "f", "off": return false
            case "1", "yes", "y", "true", "t", "on", "16", "256", "24bit": return true
            default: break
            }
        }
        if environment["NO_COLOR"] != nil { return false }
        if environment["TERM"] == "dumb" { return false }
        return isatty(fd) == 1
    }

    // MARK: Error messages

    /// The one `error:` line for an error the verbs did not word themselves: a denied system
    /// call is said as a permission problem, with the path.
    static func message(for error: Error) -> String {
        if let failure = error as? SystemCallError, failure.errno == .permissionDenied || failure.errno == .notPermitted {
            let who = geteuid() == 0 ? "" : "; not running as root"
            return "\(failure.path ?? failure.call): permission denied (\(failure.call)\(who))"
        }
        return String(describing: error)
    }
}

/// A library error that is a usage error (a bad argument found only when the verb runs): exit 2.
protocol UsageReporting { var isUsageError: Bool { get } }

extension PullError: UsageReporting {
    var isUsageError: Bool {
        switch self {
        case .unsupportedURL, .noFileName: true
        default: false
        }
    }
}

/// Log lines as systemd tools print them, "LEVEL: message" on standard error, without swift-log's
/// time stamp and label (metadata follows at debug level, where it helps).
struct PlainLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let message = event.message
        let name = switch event.level {
        case .trace, .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        case .critical: "critical"
        }
        var text = "\(name): \(message)"
        if logLevel <= .debug, !all.isEmpty {
            text += " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        Terminal.standardError(text + "\n")
    }
}

// Bad argument values that the libraries find when the verb runs: usage errors too.

extension MachineError: UsageReporting {
    var isUsageError: Bool {
        if case .invalidMachineName = self { return true }
        return false
    }
}

extension VMError: UsageReporting {
    var isUsageError: Bool {
        switch self {
        case .invalidSize, .invalidValue, .invalidMachineName, .invalidCredential: true
        default: false
        }
    }
}

extension ImagePolicy.Error: UsageReporting {
    /// A policy that does not parse; an image that does not comply is no usage error.
    var isUsageError: Bool {
        switch self {
        case .missingEquals, .unknownDesignator, .duplicateDesignator, .duplicateDefault, .unknownFlag: true
        default: false
        }
    }
}
