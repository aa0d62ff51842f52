import ArgumentParser
import ImageStore

/// `imagectl remove NAME...`.
struct StoreRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove images and their side files.",
        discussion: "Every name is checked before anything is removed. A busy (locked) image is not removed (exit status 16)."
    )

    @OptionGroup var store: StoreOptions
    @Argument(help: "The images to remove.", completion: Completions.imageNames)
    var names: [String]

    func validate() throws {
        if names.isEmpty { throw ValidationError("name at least one image to remove") }
    }

    func run() async throws {
        _ = try await store.openStore().remove(names)
    }
}
