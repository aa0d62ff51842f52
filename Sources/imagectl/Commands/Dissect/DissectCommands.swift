import ArgumentParser

/// The dissect verbs, in the order `imagectl --help` lists them. Each verb is one file beside this one.
enum DissectCommands {
    static let all: [ParsableCommand.Type] = [
        DissectCommand.self,
        MountCommand.self,
        UmountCommand.self,
        ValidateCommand.self,
        CopyFromCommand.self,
        CopyToCommand.self,
        VerifyCommand.self,
    ]
}
