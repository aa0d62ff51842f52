import ArgumentParser

/// The store verbs, in the order `imagectl --help` lists them. Each verb is one file beside this one.
enum StoreCommands {
    static let all: [ParsableCommand.Type] = [
    ]
}
