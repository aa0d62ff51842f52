import ArgumentParser
import Foundation

/// Where the image pool is: `--root DIR`, else `IMAGECTL_ROOT`, else the system search path
/// (FORMATS.md section 3) with /var/lib/machines as the writable pool.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Use only this directory as the image pool (default: $IMAGECTL_ROOT, else the system search path /etc/machines, /run/machines, /var/lib/machines (writable), /var/lib/container, /usr/local/lib/machines, /usr/lib/machines).", valueName: "dir"))
    var root: String?

    /// With an explicit root only that directory is searched; the default root brings the
    /// system search path (/etc/machines, /run/machines, ..., /usr/lib/machines).
    var explicitRoot: String? {
        if let root { return root }
        if let env = ProcessInfo.processInfo.environment["IMAGECTL_ROOT"], !env.isEmpty { return env }
        return nil
    }
}

/// systemd's output options for verbs that print: `--json=`, `--no-pager`, `--no-legend`,
/// `-l/--full` (FormatOptions, OutputConventions.swift) and `-q/--quiet`.
struct OutputOptions: ParsableArguments {
    @OptionGroup var format: FormatOptions

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no progress and no status messages (errors and warnings are still printed).")
    var quiet = false
}
