import ArgumentParser
import ImageStore

/// `imagectl export-raw NAME FILE`.
struct StoreExportRaw: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-raw",
        abstract: "Write a raw (or block device) image to a file.",
        discussion: """
            Compression follows the file suffix (.xz .gz .zst .bz2) unless --format says otherwise; \
            uncompressed output is a sparse copy (reflinked where the filesystem can). An existing \
            FILE is not replaced.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String
    @Argument(help: "The file to write, or '-' for standard output.")
    var file: String
    @Option(name: .long, help: ArgumentHelp("Compression, overriding the suffix: \(ExportCompression.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "format"))
    var format: ExportCompression?

    func run() async throws {
        // Export to "-" writes the data to standard output: nothing else may go there then.
        let progress = output.progressReporter(eventsAreOutput: true, outputCarriesData: file == "-")
        progress.begin("export", name)
        do {
            try await store.openStore().exportRaw(name, to: file, compression: format, progress: progress)
        } catch {
            progress.finish()
            throw error
        }
        progress.end("export", "\(name) to \(file)")
        if file != "-" { progress.result(["name": name, "file": file]) }
    }
}
