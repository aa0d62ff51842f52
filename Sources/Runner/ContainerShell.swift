import Foundation
import LinuxSystem
import Machines
import SystemPackage

/// `imagectl shell`: a new process inside a running container, as `machinectl shell` gives one
/// (without systemd inside: imagectl's helper joins the container's namespaces itself, see
/// CShimsEnter.h). The process gets the container's capability bounding set (read from its PID
/// 1), the container's seccomp filter, the user's identity from the container's /etc/passwd
/// and the environment a container payload gets.
public enum ContainerShell {
    public struct Request: Sendable {
        public var machine: String
        /// Command and arguments; empty: the user's login shell.
        public var command: [String] = []
        /// A name from the container's /etc/passwd or a number; default root.
        public var user: String?
        /// Extra NAME=VALUE assignments, applied last.
        public var environment: [String] = []
        /// Give the process a pty from the container's devpts; the caller relays its master.
        public var console = false
        /// Run the container's login(1) (`imagectl login`): it asks for a user and password on
        /// the pty, as a getty's login prompt does. `command` and `user` are ignored.
        public var login = false

        public init(machine: String) { self.machine = machine }
    }

    /// What will run, resolved against the container's tree.
    public struct Plan: Sendable {
        public var record: ContainerRecord
        public var argv: [String]
        public var environment: [String]
        public var workingDirectory: String
        public var uid: UInt32
        public var gid: UInt32
        public var groups: [UInt32]
        public var boundingSet: UInt64
        public var cgroupProcs: [String]
    }

    public static func plan(_ request: Request, registry: ContainerRegistry = ContainerRegistry(),
                            hostEnvironment: [String: String]) throws -> Plan {
        guard ContainerConfiguration.isValidMachineName(request.machine) else { throw RunnerError.invalidMachineName(request.machine) }
        guard let record = registry.lookup(request.machine) else { throw RunnerError.noSuchMachine(request.machine) }
        guard record.kind == .container else {
            throw RunnerError.conflictingOptions("\(record.name) is a virtual machine; imagectl shell needs a container")
        }
        for assignment in request.environment {
            guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else { throw RunnerError.invalidEnvironment(assignment) }
        }
        let proc = "/proc/\(record.leader)"
        let root: FileDescriptor
        do {
            root = try FileDescriptor.open(proc + "/root", .readOnly, options: [.directory, .closeOnExec])
        } catch {
            throw RunnerError.noSuchMachine(request.machine)
        }
        defer { try? root.close() }

        let (entry, groups) = try UserDatabase.identity(of: request.user, in: root)
        let argv: [String]
        if request.login {
            guard let login = loginPrograms.first(where: { OpenBeneath.fileType($0, in: root) == S_IFREG }) else {
                throw MachineError.unsupported("machine \(request.machine) has no \(loginPrograms.joined(separator: " or ")) to log in with")
            }
            argv = [login]
        } else if request.command.isEmpty {
            let shell = [entry.shell, "/bin/sh"].first { !$0.isEmpty && OpenBeneath.fileType($0, in: root) == S_IFREG }
            guard let shell else { throw RunnerError.noShell(record.root ?? record.name) }
            argv = [shell, "-l"]
        } else {
            argv = request.command
        }

        var environment = [
            "PATH=\(Container.defaultPath)",
            "container=\(Container.containerEnvironmentName)",
            "HOME=\(entry.home.isEmpty ? "/" : entry.home)",
            "USER=\(entry.name)",
            "LOGNAME=\(entry.name)",
        ]
        if let uuid = record.uuid { environment.append("container_uuid=\(uuid.uuidString.lowercased())") }
        if !entry.shell.isEmpty { environment.append("SHELL=\(entry.shell)") }
        if let term = hostEnvironment["TERM"] { environment.append("TERM=\(term)") }
        for assignment in request.environment {
            let name = assignment.prefix { $0 != "=" }
            environment.removeAll { $0.hasPrefix(name + "=") }
            environment.append(assignment)
        }
        let home = entry.home.isEmpty ? "/" : entry.home
        let workingDirectory = OpenBeneath.fileType(home, in: root) == S_IFDIR ? home : "/"

        // The leader's bounding set is the container's (PID 1 dropped it before exec).
        guard let status = try? readSmallTextFile(proc + "/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapBnd:") }),
              let boundingSet = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else {
            throw RunnerError.noSuchMachine(request.machine)
        }
        let cgroupProcs = (try? readSmallTextFile(proc + "/cgroup")).map {
            cgroupFiles(forProcessCgroups: $0, unifiedMountExists: FileSystem.exists("/sys/fs/cgroup/unified/cgroup.procs"))
        } ?? []
        return Plan(record: record, argv: argv, environment: environment, workingDirectory: workingDirectory,
                    uid: entry.uid, gid: entry.gid, groups: groups, boundingSet: boundingSet, cgroupProcs: cgroupProcs)
    }

    /// Where login(1) is in the trees imagectl runs (util-linux and shadow put it in /bin, a
    /// merged-/usr tree has both, busybox links it from /bin).
    static let loginPrograms = ["/bin/login", "/usr/bin/login"]

    /// The cgroup.procs files of the hierarchies a container lives in (the named "systemd" v1
    /// hierarchy, each v1 controller hierarchy and the v2 tree), from /proc/PID/cgroup of its
    /// leader: the joined process is then under the container's device policy (the devices list
    /// of its v1 cgroup, the BPF program of its v2 one) and out of every hierarchy's root.
    static func cgroupFiles(forProcessCgroups text: String, unifiedMountExists: Bool) -> [String] {
        var sawV1 = false
        var files: [String] = []
        var unifiedPath: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/"), !fields[2].contains("/../"), !fields[2].hasSuffix("/..") else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                unifiedPath = path
            } else {
                sawV1 = true
                if fields[1] == "name=systemd" {
                    files.append("/sys/fs/cgroup/systemd\(path)/cgroup.procs")
                } else if !fields[1].isEmpty && !fields[1].hasPrefix("name=") {
                    files.append("/sys/fs/cgroup/\(fields[1])\(path)/cgroup.procs")
                }
            }
        }
        if let unifiedPath {
            if !sawV1 {
                files.append("/sys/fs/cgroup\(unifiedPath)/cgroup.procs")
            } else if unifiedMountExists {
                files.append("/sys/fs/cgroup/unified\(unifiedPath)/cgroup.procs")
            }
        }
        return files
    }

    /// Starts the process and waits for it. With `console` it gets a pty of the container's
    /// devpts, relayed to imagectl's terminal by `ConsoleRelay`; `escaped` is true when ^]
    /// pressed three times killed it.
    public static func run(_ plan: Plan, console: Bool = false) throws -> (termination: ContainerTermination, escaped: Bool) {
        // The container's own filter: its --system-call-filter= values (from the record; none in
        // a record written before they were kept) and its bounding set.
        let seccomp = try SeccompFilter.program(plan.record.systemCallFilter ?? SystemCallFilterSettings(), boundingSet: plan.boundingSet)
        let process = try EnterProcess.start(plan, seccompProgram: seccomp, console: console)
        var escaped = false
        if let master = process.consoleMaster {
            defer { try? master.close() }
            if try ConsoleRelay(console: master).run() == .escape {
                process.kill()
                escaped = true
            }
        }
        return (try process.wait(), escaped)
    }
}
