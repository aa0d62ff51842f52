import ArgumentParser
import ImageStore

/// `imagectl clone SRC DST`: a btrfs snapshot when possible, else a reflink or plain copy.
struct StoreClone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Copy an image to a new name.",
        discussion: """
            A btrfs snapshot (recursive) when the source is a subvolume on the pool's btrfs, else a \
            copy that reflinks each file where the filesystem can and keeps owners, modes, xattrs, \
            ACLs, hard links and holes. Side files (.nspawn, .roothash, ...) are copied too.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image to copy.", completion: Completions.imageNames)
    var source: String
    @Argument(help: "The name of the new image.")
    var destination: String
    @Flag(name: .long, help: "Make the new image read-only.")
    var readOnly = false

    func run() async throws {
        let name = try NewImageName.validate(destination)
        let progress = output.progressReporter(eventsAreOutput: false)
        progress.begin("clone", source)
        let image: Image
        do {
            image = try await store.openStore().clone(source, to: name, readOnly: readOnly, progress: progress)
        } catch {
            progress.finish()
            throw error
        }
        progress.end("clone", "\(source) as \(image.name)")
        if output.json { try output.printJSON(image) }
    }
}
