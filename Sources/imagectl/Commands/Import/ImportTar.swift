import ArgumentParser
import ImageStore
import Import

/// `imagectl import-tar FILE|- [NAME]`
struct ImportTar: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-tar",
        abstract: "Import a tarball (plain or xz/gzip/zstd/bzip2-compressed) as a directory image.",
        discussion: """
            Owners (numeric), modes, xattrs, ACLs, file flags, hard links, device nodes and times are \
            kept. An archive with an absolute path, a '..' component, a hard link out of the tree or \
            onto a directory, an entry written through a symlink, or nesting deeper than 128 levels \
            is refused as a whole. NAME defaults to the file name without its tar suffix.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var common: ImportCommonOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The tarball, or - to read standard input.", valueName: "file"))
    var file: String

    @Argument(help: ArgumentHelp("Name of the new image (required with -).", valueName: "name"))
    var name: String?

    func run() async throws {
        try ImportRunner.refuseDirectory(file)
        let imageName = try ImportRunner.name(name, file: file, derive: LocalName.forTar)
        let options = try common.importOptions()
        let source: ImportSource = file == "-" ? .standardInput : .file(file)
        try await ImportRunner.run(store: store, output: output, source: file) { store, job in
            try await Importer.importTar(from: source, as: imageName, into: store, options: options, job: job)
        }
    }
}
