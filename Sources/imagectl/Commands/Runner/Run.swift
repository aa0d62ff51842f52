import ArgumentParser
import Foundation
import ImageStore
import Machines
import Runner
import VMRunner

/// `imagectl run -D DIR [COMMAND [ARGS...]]`: a directory tree as a container, with
/// systemd-nspawn's option names and defaults.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command or boot an OS tree in a container (like systemd-nspawn).",
        discussion: """
            An image pulled with pull-oci runs its Entrypoint+Cmd when no command is given (a \
            command replaces Cmd), with the image's Env, WorkingDir and User unless -E, --chdir or \
            --user say otherwise. \
            The payload runs as PID 1 (or PID 2 with --as-pid2) in new mount, PID, UTS, IPC and \
            cgroup namespaces, with /proc (/proc/sys read-only; kallsyms, kcore, keys, \
            sysrq-trigger and timer_list masked), read-only /sys, a private /dev, /run and /tmp on \
            tmpfs, and a cgroup tree systemd accepts. The capability bounding set is nspawn's \
            default; seccomp allows nspawn's default list of system calls (--system-call-filter=), \
            so keyring, bpf, kexec, open_by_handle_at, perf_event_open, swapon/swapoff and module \
            calls fail with EPERM, and the TIOCSTI/TIOCLINUX ioctls are denied too (for x86-64, \
            i386 and x32 calls alike); file descriptors from 3 up are closed. When standard input \
            is a terminal the payload gets a pty (also its /dev/console), relayed in raw mode with \
            the window size forwarded (^] three times within 1s kills the container); otherwise it \
            shares imagectl's standard input and output, except with --boot: the booted system's \
            /dev/console is still a pty, whose output is relayed (input is not). It gets a new \
            session. Needs root.
            Exit status: the payload's exit code; 128+N when a signal N ended it; 0 when a booted \
            system powered off or halted, 133 when it rebooted (as nspawn: a service manager can \
            restart it, RestartForceExitStatus=133); 1 when the container could not start; 2 for \
            bad options.
            Stopping: SIGTERM or SIGINT to imagectl asks the container to power off, as imagectl \
            stop does: the kill signal (--kill-signal=; default the init's power-off signal with \
            --boot, SIGRTMIN+4 for systemd, SIGUSR2 for busybox init, SIGPWR for sysvinit; SIGKILL \
            for a plain payload), then SIGKILL when it has not ended after 90 s (systemd's default \
            stop timeout; nspawn has no option for it, and neither has imagectl); a second \
            SIGTERM/SIGINT kills it at once. The machine records its init's power-off and reboot \
            signals for imagectl poweroff and reboot.
            With -x and no -M naming the machine, the machine is named after the tree or image \
            with a random suffix (NAME-0123456789abcdef, as nspawn does), so several ephemeral \
            machines of one tree run at once.
            Devices: nspawn's allow list (null, zero, full, random, urandom, tty, net/tun, the \
            container's ptys) plus each --bind/--bind-ro of a host device node (rw or r); anything \
            else cannot be made or opened, even by root inside (a cgroup v1 devices list and, where \
            there is a cgroup v2 tree, a device BPF program). The container has its own cgroup in \
            every hierarchy, so no cgroup mount inside reaches a release_agent.
            /etc/resolv.conf and /etc/localtime follow --resolv-conf= and --timezone= (default \
            auto, as nspawn). A copy is written beneath the container root (into the throw-away \
            layer with -x), never through a symlink of the image; a bind is read-only.
            The machine's NAME.nspawn file ([Exec], [Files], [Network]) fills in what the command \
            line leaves unset; one shipped beside an image is untrusted and grants nothing (see \
            --settings).
            By default the payload runs in a user namespace of 65536 IDs picked for the machine \
            (new mount, PID, UTS, IPC, cgroup namespaces owned by it) over an ID-mapped root, so \
            root inside is not root on the host (as systemd-nspawn@.service runs machines with \
            -U); a tree that cannot be ID-mapped runs without one, with a warning. \
            --private-users= (-U) chooses the range; --private-users-ownership= shifts the \
            tree's owners once (chown) or ID-maps the root mount (map); --private-users=no runs \
            without a user namespace: then the container is not a security boundary (its root \
            can change host kernel settings through a fresh /proc or /sys mount).
            The payload finds an sd_notify socket at $NOTIFY_SOCKET (/run/host/notify); imagectl \
            tells its own service manager ($NOTIFY_SOCKET) READY=1 once the payload runs, or with \
            --notify-ready=yes once the payload sent READY=1, and passes its STATUS= on.
            A tree or image given by path is locked while it runs (shared with --read-only, -x or \
            --volatile, else exclusive), as the store locks its images: a conflicting run exits 16 \
            (so does one whose machine name is taken). The container dies with imagectl, even on \
            kill -9 (an image's mounts then live only in the container's namespace); a -x snapshot \
            or temporary directory a killed run left is removed by the next run.
            cloud-init (--cloud-init=, --cloud-init-user-data=, with --boot): the NoCloud files \
            (the same defaults as imagectl vm) are written to $IMAGECTL_RUNTIME_DIR/cloud-init \
            (default /run/imagectl), bound read-only at /run/host/cloud-init in the container, \
            and the booted init gets the argument ds=nocloud;s=file:///run/host/cloud-init/, \
            which cloud-init reads from PID 1's command line in a container. Nothing is written \
            into the tree for them (cloud-init keeps its own state in /var/lib/cloud, in the -x \
            layer with -x); they are removed when the container ends.
            """)

    @Option(name: [.customShort("D"), .customLong("directory")], help: "Directory to use as the container's root file system.")
    var directory: String?

    @OptionGroup var imageOptions: RunImageOptions

    @OptionGroup var processOptions: RunProcessOptions

    @OptionGroup var securityOptions: RunSecurityOptions

    @OptionGroup var userNamespaceOptions: RunUserNamespaceOptions

    @OptionGroup(title: "Networking") var networkOptions: RunNetworkOptions

    @Flag(name: [.customShort("x"), .customLong("ephemeral")], help: "Run on a throw-away overlay over the directory; the directory is left unchanged.")
    var ephemeral = false

    @OptionGroup var cloudInit: CloudInitOptions

    @Option(name: .customLong("template"), help: "Directory to copy (or btrfs-snapshot) into the -D directory when that does not exist yet; no effect when it exists.")
    var template: String?

    @Flag(name: .customLong("read-only"), help: "Mount the root file system read-only.")
    var readOnly = false

    @Flag(name: [.customShort("b"), .customLong("boot")], help: "Boot the tree's init (systemd); COMMAND ARGS become its arguments, e.g. systemd.unit=poweroff.target.")
    var boot = false

    @Flag(name: [.customShort("a"), .customLong("as-pid2")], help: "Run a minimal init as PID 1 that reaps processes and forwards signals; the payload is PID 2.")
    var asPID2 = false

    @Option(name: [.customShort("M"), .customLong("machine")], help: "Machine name (default: the directory's or image's name). Also the default host name. Without -D or -i: the store image to run (locked while it runs).", completion: Completions.imageNames)
    var machine: String?

    @Option(name: .customLong("hostname"), help: "Host name inside the container (default: the machine name).")
    var hostname: String?

    @Option(name: .customLong("uuid"), help: "Machine UUID passed as $container_uuid (default: random).")
    var uuid: String?

    @Option(name: .customLong("chdir"), help: "Absolute working directory inside the container (default: the user's home, / with --boot).")
    var chdir: String?

    @Option(name: [.customShort("u"), .customLong("user")], help: "User to run as: a name from the image's /etc/passwd or a numeric UID.")
    var user: String?

    @Option(name: [.customShort("E"), .customLong("setenv")], help: "Set NAME=VALUE in the payload's environment (repeatable).")
    var setenv: [String] = []

    @Option(name: .customLong("kill-signal"), help: "Signal sent to PID 1 when imagectl gets SIGTERM or SIGINT, before SIGKILL after 90 s (default SIGKILL; with --boot the init's power-off signal: SIGRTMIN+4 for systemd, SIGUSR2 for busybox, SIGPWR for sysvinit).")
    var killSignal: String?

    @Option(name: .customLong("capability"), help: "Capabilities to add to the bounding set, comma-separated, or \"all\" (repeatable).")
    var capability: [String] = []

    @Option(name: .customLong("drop-capability"), help: "Capabilities to remove from the bounding set, comma-separated, or \"all\" (repeatable).")
    var dropCapability: [String] = []

    @Option(name: .customLong("no-new-privileges"), help: "yes: set no_new_privs, so setuid binaries and file capabilities grant nothing (default no).")
    var noNewPrivileges: String?

    @Flag(name: .customLong("private-network"), help: "A new network namespace with only the loopback interface, up.")
    var privateNetwork = false

    @Option(name: .customLong("resolv-conf"), help: ArgumentHelp("""
        How to set /etc/resolv.conf in the container: off, copy-host, copy-static, copy-uplink, \
        copy-stub (copy the host's /etc/resolv.conf, systemd-resolved's /usr/lib/systemd/resolv.conf, \
        /run/systemd/resolve/resolv.conf or stub-resolv.conf; a symlink in the image is left alone), \
        replace-* (copy, replacing a symlink too), bind-* (bind-mount read-only; a copy when that \
        fails), delete, or auto (default): with -n or --network-zone= a file naming the DNS server \
        on the host side of the link, off with --private-network, else the static file when \
        systemd-resolved runs, otherwise the host's file; copied into a writable tree, bound into a \
        read-only one. A source missing on the host (the -uplink/-stub files without \
        systemd-resolved) is skipped with a warning and the file left as it is.
        """, valueName: "mode"))
    var resolvConf: String?

    @Option(name: .customLong("timezone"), help: ArgumentHelp("""
        How to set /etc/localtime in the container: off, copy (the host's file), bind (read-only \
        bind mount; a copy when that fails), symlink (to ../usr/share/zoneinfo/ZONE of the host's \
        zone; bind when the image lacks that zone file), delete, or auto (default): symlink when \
        the host's /etc/localtime is a symlink, else copy (delete when the host has none); bind \
        on a read-only tree (off when the host has none).
        """, valueName: "mode"))
    var timezone: String?

    @Option(name: .customLong("settings"), help: ArgumentHelp("""
        Use the machine's NAME.nspawn settings file (systemd.nspawn(5)): yes (default), no, \
        trusted or override. It is looked for in /etc/systemd/nspawn and /run/systemd/nspawn \
        (trusted), else beside the image file or root directory (for -M: beside the image in \
        the pool, where pull puts it), where it is untrusted: Capability=, MachineID=, \
        Ephemeral=, Bind=, BindReadOnly=, TemporaryFileSystem=, Overlay*=, all [Network] \
        settings (Port= too), PrivateUsers*=, a SystemCallFilter= that allows calls, Limit*=, \
        OOMScoreAdjust= and CPUAffinity= are then ignored with a warning. Options given on the \
        command line win over the file; override: the file wins; trusted: the file is trusted \
        wherever it is. Keys imagectl lacks (PivotRoot=, LinkJournal=, SuppressSync=, \
        AmbientCapability=, Inaccessible=, BindUser=) are ignored with a warning; a malformed \
        file is an error.
        """, valueName: "mode"))
    var settings: String?

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status messages (errors, settings-file warnings and a payload killed by a signal are still reported).")
    var quiet = false

    @Argument(parsing: .captureForPassthrough, help: "Command and arguments to run (default: a login shell), or init arguments with --boot.")
    var command: [String] = []

    /// Which settings file was used and what of it was ignored.
    struct SettingsReport {
        var file: SettingsLookup.Found?
        var warnings: [String] = []
    }

    func makeConfiguration() throws -> ContainerConfiguration {
        var report = SettingsReport()
        return try makeConfiguration(report: &report)
    }

    func makeConfiguration(report: inout SettingsReport) throws -> ContainerConfiguration {
        // Passthrough capture takes an unknown option as the command; like nspawn's getopt, an
        // option-looking first word is an error (a command starting with "-" goes after "--").
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option \(first)")
        }
        var c = ContainerConfiguration(directory: directory ?? "")
        c.command = command.first == "--" ? Array(command.dropFirst()) : command
        c.boot = boot
        c.asPID2 = asPID2
        c.ephemeral = ephemeral
        c.readOnly = readOnly
        c.machineName = machine
        c.hostname = hostname
        if let uuid {
            guard let parsed = UUID(uuidString: uuid) ?? Self.parseUndashedUUID(uuid) else { throw RunnerError.invalidUUID(uuid) }
            c.uuid = parsed
        }
        c.workingDirectory = chdir
        c.user = user
        c.environment = setenv
        if let killSignal { c.killSignal = try Signals.parse(killSignal) }
        for item in capability { c.addCapabilities.formUnion(try Capability.parseList(item)) }
        for item in dropCapability { c.dropCapabilities.formUnion(try Capability.parseList(item)) }
        if let noNewPrivileges { c.noNewPrivileges = try ContainerConfiguration.parseBoolean(noNewPrivileges, option: "--no-new-privileges") }
        c.privateNetwork = privateNetwork
        try networkOptions.apply(to: &c)
        do {
            if let resolvConf { c.resolvConf = try ResolvConfMode.parse(resolvConf) }
            if let timezone { c.timezone = try TimezoneMode.parse(timezone) }
        } catch {
            throw ValidationError(error.description)
        }
        c.process.console = isatty(STDIN_FILENO) == 1
        try processOptions.apply(to: &c)
        try userNamespaceOptions.apply(to: &c)
        try securityOptions.apply(to: &c)
        if template != nil && ephemeral { throw RunnerError.conflictingOptions("--template and --ephemeral cannot be combined") }
        try imageOptions.apply(to: &c, directory: directory, template: template)
        try applySettingsFile(to: &c, report: &report)
        applyOCIConfig(to: &c)
        try RunNetworkOptions.finish(&c)
        // nspawn's rule: -x without a chosen name gets a random suffix. -M alone names the
        // pool image to run, not the machine, so it gets one too.
        c.uniqueEphemeralName = c.ephemeral && (machine == nil || (directory == nil && imageOptions.image == nil))
        // A booted system writes to /dev/console. Without a terminal it still gets a pty there,
        // relayed one way to imagectl's output (nspawn's --console=read-only), so its boot
        // messages are not lost; a plain command keeps imagectl's standard streams.
        let terminal = c.process.console
        c.process.console = terminal || c.boot
        c.process.consoleReadOnly = !terminal
        try c.validate()
        return c
    }

    /// The .nspawn file (--settings=): found by the machine name now that the root is known,
    /// parsed, and merged where the command line left a setting alone (or over it with
    /// override); an untrusted file's privileged settings are dropped (SettingsLookup).
    func applySettingsFile(to c: inout ContainerConfiguration, report: inout SettingsReport) throws {
        let mode = try SettingsMode.parse(settings ?? "yes")
        guard mode != .no else { return }
        let machine = try c.resolvedMachineName
        let beside: String?
        if let image = imageOptions.image {
            beside = image
        } else if let directory {
            beside = directory
        } else if let name = c.mounts.storeImage {
            beside = Self.storeImagePath(name, root: imageOptions.store.explicitRoot)
        } else {
            beside = nil
        }
        guard let found = SettingsLookup.find(machine: machine, beside: beside, mode: mode) else { return }
        let parsed = try SettingsLookup.load(found.path)
        report.file = found
        report.warnings = try parsed.apply(to: &c, mask: mode == .override ? [] : commandLineMask(), trusted: found.trusted, path: found.path)
        // The checks RunImageOptions made before the file could change these settings.
        if c.mounts.volatile != .no && c.ephemeral { throw RunnerError.conflictingOptions("--volatile (Volatile=) and --ephemeral (Ephemeral=) cannot be combined") }
        if template != nil && c.ephemeral { throw RunnerError.conflictingOptions("--template and --ephemeral (Ephemeral=) cannot be combined") }
    }

    /// The run settings of an image pulled from an OCI registry (`NAME.oci.json`), as podman
    /// applies them: with no command, Entrypoint+Cmd runs; a command on the line replaces Cmd
    /// (and still goes after the Entrypoint); Env comes before -E (which wins), WorkingDir and
    /// User apply unless --chdir or --user say otherwise. Only for `-M NAME` of a pool image and
    /// not with --boot. Of a `user:group` User only the user is taken (its primary group applies).
    func applyOCIConfig(to c: inout ContainerConfiguration) {
        guard !c.boot, !c.asPID2, let name = c.mounts.storeImage,
              let image = try? ImageLookup.find(name, root: imageOptions.store.explicitRoot),
              let oci = OCIMetadata.read(for: image) else { return }
        let config = oci.config
        let entrypoint = config.entrypoint ?? []
        let payload = command.first == "--" ? Array(command.dropFirst()) : command
        if !payload.isEmpty {
            c.command = entrypoint + payload
        } else if c.command.isEmpty {
            c.command = entrypoint + (config.cmd ?? [])
        }
        c.environment = (config.env ?? []) + c.environment
        if c.workingDirectory == nil, let directory = config.workingDir, !directory.isEmpty { c.workingDirectory = directory }
        if c.user == nil, let user = config.user, !user.isEmpty {
            c.user = String(user.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        }
    }

    /// Where a store image named `name` is (ImageLookup, as RootSession finds it to run it), as
    /// the path its settings file sits beside: DIR/NAME.
    static func storeImagePath(_ name: String, root: String?) -> String? {
        guard let image = try? ImageLookup.find(name, root: root) else { return nil }
        return image.directory + "/" + image.name
    }

    /// The settings the command line set (nspawn's settings mask): the file does not change them
    /// unless --settings=override.
    func commandLineMask() -> NspawnSettings.Mask {
        var mask: NspawnSettings.Mask = []
        let payload = command.first == "--" ? Array(command.dropFirst()) : command
        if boot || asPID2 || !payload.isEmpty { mask.insert(.startMode) }
        if !setenv.isEmpty { mask.insert(.environment) }
        if user != nil { mask.insert(.user) }
        if chdir != nil { mask.insert(.workingDirectory) }
        if !capability.isEmpty || !dropCapability.isEmpty { mask.insert(.capability) }
        if killSignal != nil { mask.insert(.killSignal) }
        if processOptions.personality != nil { mask.insert(.personality) }
        if uuid != nil { mask.insert(.machineID) }
        if readOnly { mask.insert(.readOnly) }
        if imageOptions.volatile != nil { mask.insert(.volatile) }
        if !imageOptions.bind.isEmpty || !imageOptions.bindReadOnly.isEmpty || !imageOptions.tmpfs.isEmpty
            || !imageOptions.overlay.isEmpty || !imageOptions.overlayReadOnly.isEmpty { mask.insert(.customMounts) }
        if privateNetwork || networkOptions.isSet { mask.insert(.network) }
        if !networkOptions.port.isEmpty { mask.insert(.ports) }
        if processOptions.notifyReady != nil { mask.insert(.notifyReady) }
        if userNamespaceOptions.privateUsers != nil || userNamespaceOptions.privateUsersOwnership != nil
            || userNamespaceOptions.pickUsers { mask.insert(.userNamespace) }
        if !securityOptions.systemCallFilter.isEmpty { mask.insert(.systemCallFilter) }
        if hostname != nil { mask.insert(.hostname) }
        if noNewPrivileges != nil { mask.insert(.noNewPrivileges) }
        if processOptions.oomScoreAdjust != nil { mask.insert(.oomScoreAdjust) }
        if processOptions.cpuAffinity != nil { mask.insert(.cpuAffinity) }
        if resolvConf != nil { mask.insert(.resolvConf) }
        if timezone != nil { mask.insert(.timezone) }
        if ephemeral { mask.insert(.ephemeral) }
        for item in processOptions.rlimit {
            if let limit = try? ProcessSettings.parseResourceLimit(item) { mask.insert(.resourceLimit(limit.resource)) }
        }
        return mask
    }

    /// systemd also accepts 32 hex digits without dashes.
    static func parseUndashedUUID(_ text: String) -> UUID? {
        guard text.count == 32, text.allSatisfy(\.isHexDigit) else { return nil }
        let chars = Array(text)
        let dashed = String(chars[0..<8]) + "-" + String(chars[8..<12]) + "-" + String(chars[12..<16]) + "-" + String(chars[16..<20]) + "-" + String(chars[20..<32])
        return UUID(uuidString: dashed)
    }

    func validate() throws {
        // All options are optional now (-D, -i or -M), so --help lands in the passthrough command.
        if let first = command.first, first == "--help" || first == "-h" { throw CleanExit.helpRequest(self) }
        do {
            _ = try makeConfiguration()
        } catch let error as RunnerError {
            throw ValidationError(error.description)
        } catch let error as MachineError {
            // --kill-signal= and -M values are checked by Machines' rules.
            throw ValidationError(error.description)
        } catch let error as NspawnSettings.Error {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        var report = SettingsReport()
        var configuration = try makeConfiguration(report: &report)
        guard geteuid() == 0 else { throw CommandFailure(message: "imagectl run needs root (namespaces and mounts)") }
        CloudInitSeed.removeStale()
        let cloudInitSeed = try cloudInit.prepareContainerSeed(&configuration)
        defer { if cloudInitSeed != nil { CloudInitSeed.removeOwn() } }
        // Shown even with -q, as nspawn does: a setting that was asked for and dropped matters.
        for warning in report.warnings { Terminal.standardError("warning: \(warning)\n") }
        if let template, try Template.materialize(template, at: configuration.directory), !quiet {
            Terminal.standardError("Created \(configuration.directory) from template \(template).\n")
        }
        let session = try await imageOptions.openRoot(configuration, quiet: quiet)
        defer { session.close() }
        let plan = try Container.plan(session.configuration, hostEnvironment: ProcessInfo.processInfo.environment)
        if let cloudInitSeed {
            try cloudInit.writeContainerSeed(cloudInitSeed, uuid: plan.uuid ?? UUID(), hostname: configuration.hostname ?? plan.machine)
        }
        if !quiet {
            if configuration.process.console && !configuration.process.consoleReadOnly { Terminal.standardError(ConsoleRelay.hint + "\n") }
            Terminal.standardError("Spawning container \(plan.machine) on \(session.description).\n")
        }
        if configuration.userNamespace.mode == .off && !quiet {
            Terminal.standardError("warning: \(PreparedUserNamespace.noUserNamespaceWarning)\n")
        }
        let outcome = try Container.run(session.configuration, plan: plan, started: session.containerStarted, warn: { warning in
            if !quiet { Terminal.standardError("warning: \(warning)\n") }
        }, securityWarning: { warning in
            // Even with -q: the user did not ask for a container whose root is the host's.
            Terminal.standardError("warning: \(warning)\n")
        })
        if outcome.stopTimedOut {
            Terminal.standardError("Container \(outcome.machine) did not stop within \(Int(Container.stopTimeout)) s; killed.\n")
        }
        if outcome.escaped { Terminal.standardError("\nContainer \(outcome.machine) killed: ^] was pressed three times.\n") }
        let status: Int32
        switch outcome.termination {
        case .exited(let code):
            if !quiet {
                Terminal.standardError(code == 0 ? "Container \(outcome.machine) exited successfully.\n"
                                                 : "Container \(outcome.machine) failed with error code \(code).\n")
            }
            status = code
        case .signaled(let signal) where configuration.boot && signal == SIGINT:
            // A PID namespace's init that calls reboot(POWER_OFF or HALT) is killed by SIGINT:
            // that is how a booted system's poweroff looks from outside (pid_namespaces(7)).
            if !quiet { Terminal.standardError("Container \(outcome.machine) has been shut down.\n") }
            status = 0
        case .signaled(let signal) where configuration.boot && signal == SIGHUP:
            // reboot(RESTART) ends the namespace's init with SIGHUP: exit 133 as nspawn, for a
            // supervisor to start it again (imagectl-run@.service: RestartForceExitStatus=133).
            if !quiet { Terminal.standardError("Container \(outcome.machine) is being rebooted.\n") }
            status = 133
        case .signaled(let signal):
            Terminal.standardError("Container \(outcome.machine) terminated by signal \(Signals.name(signal)).\n")
            status = 128 + signal
        }
        throw ExitCode(status)
    }
}
