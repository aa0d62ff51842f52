import ArgumentParser

/// The store verbs, in the order `imagectl --help` lists them. Each verb is one file beside this one.
enum StoreCommands {
    static let all: [ParsableCommand.Type] = [
        StoreList.self,
        StoreShow.self,
        StoreClone.self,
        StoreRename.self,
        StoreRemove.self,
        StoreReadOnly.self,
        StoreResize.self,
        StoreSetLimit.self,
        StoreClean.self,
        StoreExportTar.self,
        StoreExportRaw.self,
    ]
}
