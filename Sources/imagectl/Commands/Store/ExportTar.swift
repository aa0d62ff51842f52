import ArgumentParser
import ImageStore

/// `imagectl export-tar NAME FILE`.
struct StoreExportTar: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-tar",
        abstract: "Write a directory image as a tarball.",
        discussion: """
            A pax tarball with numeric owners, modes, xattrs, ACLs, hard links, device nodes and \
            sparse files. Compression follows the file suffix (.xz .gz .zst .bz2; none otherwise) \
            unless --format says otherwise. An existing FILE is not replaced.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String
    @Argument(help: "The tarball to write, or '-' for standard output.")
    var file: String
    @Option(name: .long, help: ArgumentHelp("Compression, overriding the suffix: \(ExportCompression.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "format"))
    var format: ExportCompression?

    func run() async throws {
        // Export to "-" writes the data to standard output: nothing else may go there then.
        let progress = output.progressReporter(eventsAreOutput: true, outputCarriesData: file == "-")
        progress.begin("export", name)
        do {
            try await store.openStore().exportTar(name, to: file, compression: format, progress: progress)
        } catch {
            progress.finish()
            throw error
        }
        progress.end("export", "\(name) to \(file)")
        if file != "-" { progress.result(["name": name, "file": file]) }
    }
}
