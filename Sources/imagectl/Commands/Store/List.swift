import ArgumentParser
import ImageStore

/// `imagectl list`: the images on the search path, like `machinectl list-images`.
struct StoreList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the images in the store.",
        discussion: "Columns: NAME TYPE RO USAGE CREATED MODIFIED. USAGE is the space allocated on disk (like du)."
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: [.long, .short], help: "Also list hidden images (names starting with '.').")
    var all = false

    func run() async throws {
        let images = try await store.openStore().list(includeHidden: all)
        if output.json {
            try Output.printJSON(images)
            return
        }
        if images.isEmpty {
            Terminal.standardOutput("No images.\n")
            return
        }
        let rows = images.map { image in
            [image.name, image.type.rawValue, StoreFormat.yesNo(image.readOnly), Output.size(image.usage),
             StoreFormat.date(image.created), StoreFormat.date(image.modified)]
        }
        Output.printTable(header: ["name", "type", "ro", "usage", "created", "modified"], rows: rows,
                          footer: "\(images.count) images listed.")
    }
}
