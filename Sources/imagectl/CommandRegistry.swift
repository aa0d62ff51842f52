import ArgumentParser

/// Every verb of the CLI, grouped by the module that does the work.
enum CommandRegistry {
    static let subcommands: [ParsableCommand.Type] =
        StoreCommands.all + ImportCommands.all + DissectCommands.all + RunnerCommands.all
}
