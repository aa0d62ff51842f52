import ArgumentParser
import ImageStore
import Import

/// `imagectl import-raw FILE|- [NAME]`
struct ImportRaw: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-raw",
        abstract: "Import a raw disk image (plain or xz/gzip/zstd/bzip2-compressed; qcow2 is converted) into the pool.",
        discussion: """
            The format is detected from the file's content, never from its name. The image is written \
            sparse under a temporary name and renamed to NAME.raw only when complete. NAME defaults \
            to the file name without .xz .gz .bz2 .zst .raw .qcow2 .img .bin .tar suffixes.
            A tar (plain or compressed) holding exactly one regular file, such as Debian's cloud \
            images (a tar.xz holding disk.raw), is taken as that file, streamed: only the file is \
            written (as a bare image would be), directory entries are passed over, and a tar with \
            no regular file, several, or another kind of entry (a link, a device) is refused.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var common: ImportCommonOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The image file, or - to read standard input.", valueName: "file"))
    var file: String

    @Argument(help: ArgumentHelp("Name of the new image (required with -).", valueName: "name"))
    var name: String?

    func run() async throws {
        try ImportRunner.refuseDirectory(file)
        let imageName = try ImportRunner.name(name, file: file, derive: LocalName.forRaw)
        let options = try common.importOptions()
        let source: ImportSource = file == "-" ? .standardInput : .file(file)
        try await ImportRunner.run(store: store, output: output, source: file, check: ImportRunner.warnIfNotADiskImage) { store, job in
            try await Importer.importRaw(from: source, as: imageName, into: store, options: options, job: job)
        }
    }
}
