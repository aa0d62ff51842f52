import ArgumentParser
import ImageStore

/// `imagectl rename OLD NEW`.
struct StoreRename: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rename",
        abstract: "Rename an image (its side files follow)."
    )

    @OptionGroup var store: StoreOptions
    @Argument(help: "The current name.", completion: Completions.imageNames)
    var old: String
    @Argument(help: "The new name.")
    var new: String

    func run() async throws {
        let name = try NewImageName.validate(new)
        _ = try await store.openStore().rename(old, to: name)
    }
}
