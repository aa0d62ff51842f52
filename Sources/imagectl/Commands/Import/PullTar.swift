import ArgumentParser
import Import

/// `imagectl pull-tar URL [NAME]`
struct PullTar: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull-tar",
        abstract: "Download a tarball (plain or xz/gzip/zstd/bzip2-compressed) over http, https or file:// and import it as a directory image.",
        discussion: """
            The download is hashed, decompressed and extracted in one pass (with import-tar's \
            checks on every entry) into a temporary directory that is renamed to NAME only after \
            the SHA-256 matches (see --verify). NAME.nspawn is fetched too when the server has it. \
            An interrupted download is kept and resumed with a Range request by the next pull of \
            the same URL; an image pulled before from the same URL is re-downloaded only if its \
            ETag changed. NAME defaults to the URL's file name without its tar suffix.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var common: PullCommonOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: ArgumentHelp("The tarball's http://, https:// or file:// URL.", valueName: "url"))
    var url: String

    @Argument(help: ArgumentHelp("Name of the new image.", valueName: "name"))
    var name: String?

    func run() async throws {
        try await PullRunner.run(.tar, url: url, name: name, store: store, common: common, output: output)
    }
}
