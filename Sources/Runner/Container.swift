import Foundation
import LinuxSystem
import Machines
import SystemPackage

/// Runs a directory tree as a container: the host-side half of `imagectl run` (what to run, as
/// whom, with which environment, cgroup and seccomp filter); the namespaces and mounts are made by
/// the C child in CShims/container.c.
public enum Container {
    /// Value of $container for the payload. nspawn sets "systemd-nspawn"; imagectl names itself,
    /// so systemd inside reports the virtualization as "container-other" and units conditioned on
    /// ConditionVirtualization=systemd-nspawn do not run.
    public static let containerEnvironmentName = "imagectl"

    /// PATH given to the payload: nspawn's default, with /sbin and /bin for split-usr images.
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    static let initCandidates = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/sbin/init"]

    /// $NOTIFY_SOCKET of the payload: where the child binds the notification socket (nspawn's path).
    public static let notifySocketPath = "/run/host/notify"

    /// Seconds a SIGTERM/SIGINT to `imagectl run` waits for the container to power off before
    /// it is SIGKILLed: systemd's default stop timeout, the same as `imagectl stop`'s. nspawn
    /// has no such option (its service manager's TimeoutStopSec= does this), so neither does
    /// imagectl; a second SIGTERM/SIGINT kills at once.
    public static let stopTimeout = MachineControl.defaultStopTimeout

    /// What was decided before the start, for messages and tests.
    public struct Plan: Sendable {
        public var machine: String
        public var argv: [String]
        public var environment: [String]
        public var workingDirectory: String
        public var uid: UInt32
        public var gid: UInt32
        public var groups: [UInt32]
        /// Sent to PID 1 on the first SIGTERM/SIGINT to imagectl: --kill-signal=, else the
        /// init's power-off signal, else (a plain payload) SIGKILL.
        public var killSignal: Int32
        /// The machine UUID given to the payload as $container_uuid.
        public var uuid: UUID? = nil
        /// The init that runs (`.plain` for a plain payload), found from argv[0] in the tree.
        public var initSystem: InitSystem = .plain
        /// What `imagectl poweroff`/`reboot` send (kept in the machine record).
        public var lifecycleSignals = LifecycleSignals(poweroff: SIGKILL, reboot: SIGKILL, halt: SIGKILL)
    }

    public struct Outcome: Sendable {
        public var machine: String
        public var termination: ContainerTermination
        /// True when a SIGTERM/SIGINT to imagectl was forwarded as the kill signal.
        public var killed: Bool
        /// True when the container did not end within `stopTimeout` of that and was SIGKILLed.
        public var stopTimedOut = false
        /// True when ^] pressed three times on the console killed the container.
        public var escaped = false
    }

    /// Resolves payload, user, environment and working directory against the image's tree.
    public static func plan(_ configuration: ContainerConfiguration, hostEnvironment: [String: String]) throws -> Plan {
        try configuration.validate()
        var machine = try configuration.resolvedMachineName
        if configuration.uniqueEphemeralName { machine = ephemeralMachineName(machine) }
        guard HostFiles.isDirectory(configuration.directory) else { throw RunnerError.notADirectory(configuration.directory) }
        let root = try FileDescriptor.open(configuration.directory, .readOnly, options: [.directory, .closeOnExec])
        defer { try? root.close() }

        let (entry, groups) = try UserDatabase.identity(of: configuration.user, in: root)

        func isExecutableFile(_ path: String) -> Bool { OpenBeneath.fileType(path, in: root) == S_IFREG }
        var argv: [String]
        if configuration.boot {
            guard let initPath = initCandidates.first(where: isExecutableFile) else { throw RunnerError.noInit(configuration.directory) }
            argv = [initPath] + configuration.command
        } else if !configuration.command.isEmpty {
            argv = configuration.command
        } else {
            let shell = [entry.shell, "/bin/sh"].first { !$0.isEmpty && isExecutableFile($0) }
            guard let shell else { throw RunnerError.noShell(configuration.directory) }
            argv = [shell, "-l"]
        }

        let uuid = configuration.uuid ?? UUID()
        var environment = [
            "PATH=\(defaultPath)",
            "container=\(containerEnvironmentName)",
            "container_uuid=\(uuid.uuidString.lowercased())",
            "HOME=\(entry.home.isEmpty ? "/" : entry.home)",
            "USER=\(entry.name)",
            "LOGNAME=\(entry.name)",
        ]
        if !configuration.boot && !entry.shell.isEmpty { environment.append("SHELL=\(entry.shell)") }
        if let term = hostEnvironment["TERM"] { environment.append("TERM=\(term)") }
        // Always, as nspawn: the container's sd_notify socket (lifecycle, see NotifyListener).
        environment.append("NOTIFY_SOCKET=\(notifySocketPath)")
        for assignment in configuration.environment {
            let name = assignment.prefix { $0 != "=" }
            environment.removeAll { $0.hasPrefix(name + "=") }
            environment.append(assignment)
        }

        let workingDirectory: String
        if let chdir = configuration.workingDirectory {
            workingDirectory = chdir
        } else if !configuration.boot && !entry.home.isEmpty && OpenBeneath.fileType(entry.home, in: root) == S_IFDIR {
            workingDirectory = entry.home
        } else {
            workingDirectory = "/"
        }
        // Which signals the init understands, decided from the file that will run.
        let initSystem = configuration.boot ? InitSystem.classify(resolvedPath: resolve(argv[0], in: root) ?? argv[0]) : .plain
        let signals = initSystem.signals(killSignal: configuration.killSignal ?? SIGKILL)
        let killSignal = configuration.killSignal ?? signals.poweroff
        return Plan(machine: machine, argv: argv, environment: environment, workingDirectory: workingDirectory,
                    uid: entry.uid, gid: entry.gid, groups: groups, killSignal: killSignal, uuid: uuid,
                    initSystem: initSystem, lifecycleSignals: signals)
    }

    /// nspawn's name for an ephemeral machine without an explicit name: NAME-<16 hex digits>, so
    /// any number of them from one tree or pool image run side by side (the base is shortened
    /// so that the whole stays a valid machine name).
    public static func ephemeralMachineName(_ base: String) -> String {
        String(base.prefix(64 - 17)) + "-" + FileSystem.randomHex(8)
    }

    /// `path` inside the tree at `root` with every symlink resolved within it (as the child's
    /// exec will see it: /sbin/init -> ../bin/busybox gives /bin/busybox); nil when it does not
    /// resolve. The kernel's resolution (openat2 RESOLVE_IN_ROOT), read back from /proc/self/fd.
    static func resolve(_ path: String, in root: FileDescriptor) -> String? {
        guard let fd = try? OpenBeneath.open(path, in: root, flags: OpenBeneath.pathOnly) else { return nil }
        defer { try? fd.close() }
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd.rawValue)"),
              let base = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(root.rawValue)") else { return nil }
        if base == "/" { return target }
        guard target.hasPrefix(base + "/") else { return nil }
        return String(target.dropFirst(base.count))
    }

    /// Starts the container, calls `started` once the payload runs, and waits for it to end.
    /// Cgroups and the staging directory are removed on every return path; the ephemeral layer
    /// lives only in the container's mount namespace and disappears with it.
    /// `warn` gets one line per --resolv-conf=/--timezone= source missing on the host;
    /// `securityWarning` the line saying the default user namespace could not be had (a caller
    /// shows it even when asked to be quiet: the container's root is then the host's).
    public static func run(_ configuration: ContainerConfiguration, plan: Plan, started: (Plan) -> Void = { _ in },
                           warn: (String) -> Void = { _ in }, securityWarning: (String) -> Void = { _ in }) throws -> Outcome {
        let seccomp = configuration.seccomp
            ? try SeccompFilter.program(configuration.systemCallFilter, boundingSet: Capability.mask(configuration.boundingSet)) : []
        // The host side of the network, first: addresses are decided now, so /etc/resolv.conf can
        // name the DNS server, and a veth's dnsmasq starts up while everything below runs; the
        // links go into the container's namespace, and host0 is addressed for a payload without
        // a DHCP client, between the clone and the payload's start.
        let network = try ContainerNetwork(configuration, machine: plan.machine)
        defer { network.tearDown() }
        // In effect on the container's cgroups before the child is cloned and joins them.
        let devices = DevicePolicy.nspawnDefault.allowingBoundDevices(configuration.mounts.orderedMounts)
        let cgroups = try CgroupTree.create(machine: plan.machine, devices: devices)
        defer { cgroups.remove() }
        let staging = "\(Leftovers.runnerDirectory)/\(plan.machine).\(HostFiles.processID)"
        try HostFiles.makeStagingDirectory(staging)
        defer { HostFiles.removeDirectory(staging) }

        // nspawn's "writable": not --read-only (RootSession also sets that for --volatile=state),
        // or --volatile=yes, whose root is a fresh tmpfs.
        let writable = !configuration.readOnly || configuration.mounts.volatile == .yes
        let resolvConf = EtcFiles.resolvConfPlan(configuration.resolvConf, privateNetwork: configuration.privateNetwork, writable: writable, warn: warn)
        let localtime = EtcFiles.timezonePlan(configuration.timezone, writable: writable, warn: warn)
        let notifications = try NotifyListener.open()
        defer { notifications.stop() }
        // Range, reservation, chown or ID-mapped root (UserNamespace.swift).
        let userNamespace = try PreparedUserNamespace.prepare(configuration, machine: plan.machine, warn: securityWarning)
        defer { userNamespace?.close() }
        var setup = try setupInput(configuration, staging: staging, cgroups: cgroups, userNamespace: userNamespace)
        setup.resolvConf = try network.resolvConfPlan(configuration.resolvConf, writable: writable) ?? resolvConf
        setup.localtime = localtime
        var spec = ChildSpec(
            directory: configuration.directory, plan: try SetupPlan(setup), privateNetwork: configuration.privateNetwork,
            asPID2: configuration.asPID2, hostname: configuration.hostname ?? plan.machine,
            payload: PayloadDescription(
                argv: plan.argv, environment: plan.environment, workingDirectory: plan.workingDirectory,
                uid: plan.uid, gid: plan.gid, groups: plan.groups, capabilities: Capability.mask(configuration.boundingSet),
                noNewPrivileges: configuration.noNewPrivileges, seccompProgram: seccomp),
            cgroupDirectories: cgroups.directories)
        spec.console = configuration.process.console
        spec.limits = configuration.process
        spec.notifySocket = notifications.socket
        spec.userNamespaceFD = userNamespace?.fd
        spec.networkNamespaceFD = network.joinedNamespaceFD
        let process = try ContainerProcess.start(spec, beforePayload: network.setUpHook)
        process.forwardTerminationSignals(as: plan.killSignal, timeout: stopTimeout)
        // Registered once PID 1 runs; removed on every return path (a kill -9 of imagectl leaves
        // an unlocked entry that the next reader removes, see MachineRegistry).
        let registration: MachineRegistration
        do {
            var record = ContainerRecord(
                name: plan.machine, kind: .container, leader: process.pid, supervisor: HostFiles.processID,
                root: configuration.directory, uuid: plan.uuid, started: Date(),
                stopSignal: plan.lifecycleSignals.poweroff)
            record.rebootSignal = plan.lifecycleSignals.reboot
            record.initSystem = plan.initSystem
            record.systemCallFilter = configuration.systemCallFilter
            record.userNamespace = userNamespace?.resolved
            record.addresses = network.addresses
            if !configuration.verityTrust.isEmpty { record.verity = configuration.verityTrust }
            registration = try ContainerRegistry().register(record)
        } catch {
            process.kill()
            _ = try? process.wait()
            throw error
        }
        defer { registration.unregister() }
        // Readiness: READY=1 now or when the payload says so (--notify-ready=).
        let policy = ReadinessPolicy(notifyReady: configuration.notifyReady)
        let notifier = ServiceNotifier()
        notifier.send(policy.startMessage)
        notifications.start(leader: process.pid) { message in
            if let upward = policy.forward(message) { notifier.send(upward) }
        }
        started(plan)
        var escaped = false
        if let master = process.consoleMaster {
            defer { try? master.close() }
            let relay = ConsoleRelay(console: master, readOnly: configuration.process.consoleReadOnly,
                                     leaderExit: process.exitDescriptor)
            if try relay.run() == .escape {
                process.kill()
                escaped = true
            }
        }
        let termination = try process.wait()
        return Outcome(machine: plan.machine, termination: termination, killed: ContainerProcess.signalForwarded,
                       stopTimedOut: process.stopTimedOut, escaped: escaped)
    }

    /// What the set-up plan is built from: the options, and what it needs from the host (device
    /// numbers, the tree's owner and /usr layout). The /etc files are the caller's.
    static func setupInput(_ configuration: ContainerConfiguration, staging: String, cgroups: CgroupTree,
                           userNamespace: PreparedUserNamespace?) throws -> SetupPlan.Input {
        var input = SetupPlan.Input(directory: configuration.directory, staging: staging)
        input.readOnly = configuration.readOnly
        input.privateNetwork = configuration.privateNetwork
        input.cgroupLayout = cgroups.layout
        input.cgroupDirectories = cgroups.directories
        input.mounts = configuration.mounts.orderedMounts
        input.hostDevices = try HostFiles.deviceNodes(SetupPlan.deviceNodes)
        if let userNamespace {
            input.userNamespace = .init(base: userNamespace.resolved.base, idmapRoot: userNamespace.resolved.ownership == .map)
            input.idmapBindsByDefault = userNamespace.idmapBindsByDefault
        }
        if configuration.mounts.volatile == .yes {
            input.root = .volatile
            input.treeHas = HostFiles.pathExists(beneath: configuration.directory)
        } else if configuration.ephemeral {
            let status = try FileStatus.stat(configuration.directory)
            var owner = SetupPlan.Input.TreeOwner(uid: status.owner, gid: status.group, mode: status.permissions)
            // Through the ID-mapped lower layer the tree's IDs are shifted by the base (an ID
            // outside the map shows as the overflow ID, as the kernel does).
            if let mapped = input.userNamespace, mapped.idmapRoot {
                func shift(_ id: UInt32) -> UInt32 { id < 65536 ? mapped.base + id : 65534 }
                owner = .init(uid: shift(owner.uid), gid: shift(owner.gid), mode: owner.mode)
            }
            input.root = .ephemeral(owner: owner)
        }
        return input
    }
}
