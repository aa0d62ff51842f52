import ArgumentParser
import Foundation
import Runner

/// `imagectl shell NAME [COMMAND [ARGS...]]`: a new process inside a running container (like
/// `machinectl shell`).
struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Run a shell or a command inside a running container (like machinectl shell).",
        discussion: """
            The process joins the container's mount, PID, UTS, IPC, network and cgroup namespaces \
            and its cgroup, keeps the container's capability bounding set and gets the \
            container's seccomp filter (its --system-call-filter= values), runs as root (or \
            --user) with the environment a container payload gets, in the user's home directory. \
            Default: the user's login shell. When \
            standard input is a terminal the process gets a pty of the container, relayed in raw \
            mode (^] three times within 1s kills it); otherwise it shares imagectl's streams. \
            Needs root.
            Exit status: the command's exit code; 128+N when a signal N ended it; 1 when it could \
            not be started (no such machine, the machine is a VM, command not found).
            """)

    @Argument(help: "Name of the running container (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Option(name: [.customShort("u"), .customLong("user")], help: "User to run as: a name from the container's /etc/passwd or a numeric UID (default root).")
    var user: String?

    @Option(name: [.customShort("E"), .customLong("setenv")], help: "Set NAME=VALUE in the process's environment (repeatable).")
    var setenv: [String] = []

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status messages.")
    var quiet = false

    @Argument(parsing: .captureForPassthrough, help: "Command and arguments to run inside (default: the user's login shell).")
    var command: [String] = []

    func run() throws {
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option \(first)")
        }
        guard geteuid() == 0 else { throw CommandFailure(message: "imagectl shell needs root (it joins the container's namespaces)") }
        var request = ContainerShell.Request(machine: name)
        request.command = command.first == "--" ? Array(command.dropFirst()) : command
        request.user = user
        request.environment = setenv
        request.console = isatty(STDIN_FILENO) == 1
        let plan = try ContainerShell.plan(request, hostEnvironment: ProcessInfo.processInfo.environment)
        if request.console && !quiet { Terminal.standardError("Connected to machine \(name). Press ^] three times within 1s to exit session.\n") }
        let (termination, escaped) = try ContainerShell.run(plan, console: request.console)
        if escaped && !quiet { Terminal.standardError("\nSession killed: ^] was pressed three times.\n") }
        switch termination {
        case .exited(let code): throw ExitCode(code)
        case .signaled(let signal): throw ExitCode(128 + signal)
        }
    }
}
