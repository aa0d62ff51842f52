import ArgumentParser
import Foundation
import ImageStore
import Import
import Pull

/// `imagectl push-oci NAME REF`
struct PushOci: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push-oci",
        abstract: "Push a directory image to an OCI registry as a one-layer OCI image.",
        discussion: """
            The tree is packed as one pax tar layer (owners, modes, xattrs and ACLs kept), \
            compressed per --format; the image config is the one pull-oci kept (NAME.oci.json) or \
            a minimal linux/amd64 one. Each blob is uploaded only when the registry lacks it (HEAD \
            first, then a monolithic POST+PUT upload); the manifest is put last, under REF's tag. \
            REF is written as for pull-oci; https unless http:// is given. Credentials come from \
            the same auth files as pull-oci's.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("Compression of the layer.", valueName: "zstd|gzip"))
    var format = "zstd"

    @Argument(help: ArgumentHelp("The image to push.", valueName: "name"), completion: Completions.imageNames)
    var name: String

    @Argument(help: ArgumentHelp("Where to push it: [https://|http://]HOST[:PORT]/REPO[:TAG].", valueName: "ref"))
    var reference: String

    func validate() throws {
        guard OCIPusher.LayerFormat(rawValue: format) != nil else { throw ValidationError("--format: '\(format)' is not zstd or gzip") }
        do { _ = try OCIReference(parsing: reference) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        let parsed = try OCIReference(parsing: reference)
        let layerFormat = OCIPusher.LayerFormat(rawValue: format) ?? .zstd
        let progress = output.progressReporter(eventsAreOutput: true)
        let store = try ImageStore(root: self.store.explicitRoot)
        let job = ImportJob()
        let watch = InterruptWatch(job: job)
        defer { watch.stop() }
        do {
            let result = try await OCIPusher.push(name, to: parsed, format: layerFormat, store: store, job: job, progress: progress)
            if output.json {
                progress.result(["name": name, "reference": "\(parsed)", "digest": result.manifestDigest, "uploaded": result.uploaded])
            } else {
                output.status("Pushed \(name) as \(parsed)@\(result.manifestDigest)")
            }
        } catch {
            progress.finish()
            if job.isCancelled {
                throw CommandFailure(message: "push interrupted; the tag was not changed", status: InterruptWatch.interruptedStatus(for: job))
            }
            throw error
        }
    }
}
