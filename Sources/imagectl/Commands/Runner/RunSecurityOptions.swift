import ArgumentParser
import Runner

/// The seccomp option of `imagectl run`.
struct RunSecurityOptions: ParsableArguments {
    @Option(name: .customLong("system-call-filter"), help: ArgumentHelp("""
        Space-separated system call names and @groups (systemd's groups, e.g. @clock, @keyring, \
        @obsolete; @known is every call) added to the default allow list, or, when the value \
        starts with "~", denied (EPERM) even if the default allows them; a call both allowed and \
        denied is denied (repeatable). The default is nspawn's allow list: @aio @basic-io @chown \
        @default @file-system @io-event @ipc @mount @network-io @process @resources @setuid \
        @signal @sync @timer, seccomp and some single calls, plus @clock, @module, @raw-io, \
        @memlock, acct, ptrace, reboot, syslog and vhangup only when the matching capability \
        is in the bounding set. Other known calls fail with EPERM, calls the seccomp library does \
        not know with ENOSYS.
        """, valueName: "list"))
    var systemCallFilter: [String] = []

    func apply(to c: inout ContainerConfiguration) throws {
        for value in systemCallFilter { try c.systemCallFilter.add(value) }
    }
}
