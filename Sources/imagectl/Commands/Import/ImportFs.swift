import ArgumentParser
import ImageStore
import Import

/// `imagectl import-fs DIR [NAME]`
struct ImportFs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-fs",
        abstract: "Import a directory tree as a directory image.",
        discussion: """
            A btrfs subvolume on the pool's file system is snapshotted; anything else is copied \
            keeping owners, modes, times, hard links, xattrs, ACLs and holes (reflinked where the \
            file system can). NAME defaults to the directory's name.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Mark the new image read-only.")
    var readOnly = false

    @Flag(name: .long, help: "Replace an existing image of the same name in the pool.")
    var force = false

    @Argument(help: ArgumentHelp("The directory to import.", valueName: "dir"))
    var directory: String

    @Argument(help: ArgumentHelp("Name of the new image.", valueName: "name"))
    var name: String?

    func run() async throws {
        let imageName = try ImportRunner.name(name, file: directory, derive: LocalName.lastComponent)
        let options = ImportOptions(readOnly: readOnly, force: force)
        let directory = self.directory
        try await ImportRunner.run(store: store, output: output, source: directory) { store, job in
            try await Importer.importDirectory(directory, as: imageName, into: store, options: options, job: job)
        }
    }
}
