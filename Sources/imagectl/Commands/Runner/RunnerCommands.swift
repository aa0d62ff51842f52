import ArgumentParser

/// The runner verbs, in the order `imagectl --help` lists them. Each verb is one file beside this one.
enum RunnerCommands {
    static let all: [ParsableCommand.Type] = [
        RunCommand.self,
        VMCommand.self,
        MachinesCommand.self,
        StatusCommand.self,
        PowerOffCommand.self,
        RebootCommand.self,
        StopCommand.self,
        TerminateCommand.self,
        KillCommand.self,
        ShellCommand.self,
        LoginCommand.self,
    ]
}
