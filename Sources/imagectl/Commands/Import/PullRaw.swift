import ArgumentParser
import Import

/// `imagectl pull-raw URL [NAME]`
struct PullRaw: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull-raw",
        abstract: "Download a raw disk image (plain, xz/gzip/zstd/bzip2-compressed, or qcow2) over http, https or file:// and import it.",
        discussion: """
            The download is hashed, decompressed and written sparse in one pass, under a temporary \
            name that is renamed to NAME.raw only after the SHA-256 matches (see --verify). \
            NAME.nspawn, NAME.roothash, NAME.roothash.p7s and NAME.verity are fetched too when the \
            server has them, checked against the same checksum file and stored beside the image. \
            An interrupted download is kept and resumed with a Range request by the next pull of \
            the same URL; an image pulled before from the same URL is re-downloaded only if its \
            ETag changed. NAME defaults to the URL's file name without .xz .gz .bz2 .zst .raw \
            .qcow2 .img .bin suffixes.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var common: PullCommonOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The image's http://, https:// or file:// URL.", valueName: "url"))
    var url: String

    @Argument(help: ArgumentHelp("Name of the new image.", valueName: "name"))
    var name: String?

    func run() async throws {
        try await PullRunner.run(.raw, url: url, name: name, store: store, common: common, output: output)
    }
}
