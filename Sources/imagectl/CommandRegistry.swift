import ArgumentParser

/// Every verb of the CLI, in the order `imagectl --help` lists them.
enum CommandRegistry {
    static let subcommands: [ParsableCommand.Type] = [
    ]
}
