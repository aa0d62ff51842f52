import ArgumentParser
import Foundation
import Runner

/// `imagectl login NAME`: a login prompt on a new pty in a running container (machinectl login).
struct LoginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Get a login prompt in a running container (like machinectl login).",
        discussion: """
            Starts the container's login(1) (/bin/login or /usr/bin/login) on a new pty of the \
            container, joined to its namespaces, cgroup, capability bounding set and seccomp \
            filter as imagectl shell is, and relays it to this terminal in raw mode: log in with a \
            user and password of the container. ^] pressed three times within 1s ends the \
            session. Standard input must be a terminal. Needs root. Exit status: login's; 1 when \
            no container of that name is running or it has no login program.
            """)

    @Argument(help: "Name of the running container (see imagectl machines).", completion: Completions.machineNames)
    var name: String

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print no status messages.")
    var quiet = false

    func run() throws {
        guard geteuid() == 0 else { throw CommandFailure(message: "imagectl login needs root (it joins the container's namespaces)") }
        guard isatty(STDIN_FILENO) == 1 else { throw CommandFailure(message: "imagectl login needs a terminal on standard input") }
        var request = ContainerShell.Request(machine: name)
        request.login = true
        request.console = true
        let plan = try ContainerShell.plan(request, hostEnvironment: ProcessInfo.processInfo.environment)
        if !quiet { Terminal.standardError("Connected to machine \(name). Press ^] three times within 1s to exit session.\n") }
        let (termination, escaped) = try ContainerShell.run(plan, console: true)
        if escaped && !quiet { Terminal.standardError("\nSession killed: ^] was pressed three times.\n") }
        switch termination {
        case .exited(let code): throw ExitCode(code)
        case .signaled(let signal): throw ExitCode(128 + signal)
        }
    }
}
