import ArgumentParser

/// The import verbs, in the order `imagectl --help` lists them. Each verb is one file beside this one.
enum ImportCommands {
    static let all: [ParsableCommand.Type] = [
        ImportRaw.self,
        ImportTar.self,
        ImportFs.self,
        PullRaw.self,
        PullTar.self,
        PullOci.self,
        PushOci.self,
    ]
}
