import ArgumentParser
import Foundation
import ImageStore
import Import
import Pull

/// `imagectl pull-oci REF [NAME]`
struct PullOci: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull-oci",
        abstract: "Download an image from an OCI registry (distribution API v2) and unpack its layers into a directory image.",
        discussion: """
            REF is [https://|http://]HOST[:PORT]/REPO[:TAG|@sha256:DIGEST], or a Docker Hub short \
            name (debian = docker.io/library/debian:latest); https unless http:// is written. OCI \
            manifests and indexes and Docker schema 2 manifests and lists are understood; an index \
            is resolved to --platform. Anonymous bearer tokens are fetched as the registry's \
            WWW-Authenticate challenge asks, with credentials from $REGISTRY_AUTH_FILE, \
            $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json where they have an \
            entry for the registry. Every blob is checked against its digest as it streams; layers \
            are cached by digest in the pool (a second image sharing layers downloads only the new \
            ones; 'clean' removes layers no image uses) and applied in order with OCI whiteouts and \
            import-tar's checks on every entry. The image config (Entrypoint, Cmd, Env, WorkingDir, \
            User, ExposedPorts, Labels) is kept as NAME.oci.json: 'show' prints it and 'run -M NAME' \
            without a command runs Entrypoint+Cmd with it. NAME defaults to the repository's last \
            component.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("The platform taken from an image index: os/architecture[/variant].", valueName: "os/arch"))
    var platform = "linux/amd64"

    @Flag(name: .long, help: "Mark the new image read-only.")
    var readOnly = false

    @Flag(name: .long, help: "Replace an existing image of the same name in the pool.")
    var force = false

    @Option(name: .long, help: ArgumentHelp(
        "Abort when a layer or its decompressed content exceeds this many bytes; suffixes K, M, G, T (powers of 1024) accepted. Default 64G.",
        valueName: "bytes"))
    var maxSize: String?

    @Argument(help: ArgumentHelp("The image reference.", valueName: "ref"))
    var reference: String

    @Argument(help: ArgumentHelp("Name of the new image.", valueName: "name"))
    var name: String?

    func pullOptions() throws -> OCIPullOptions {
        var options = OCIPullOptions(platform: platform, force: force, readOnly: readOnly)
        let parts = platform.split(separator: "/", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw ValidationError("--platform: '\(platform)' is not os/architecture[/variant], e.g. linux/amd64")
        }
        if let maxSize {
            guard let bytes = ImportCommonOptions.parseSize(maxSize), bytes > 0 else {
                throw ValidationError("--max-size: '\(maxSize)' is not a size in bytes (e.g. 1073741824 or 1G)")
            }
            options.maximumSize = bytes
        }
        return options
    }

    func validate() throws {
        _ = try pullOptions()
        do { _ = try OCIReference(parsing: reference) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        let options = try pullOptions()
        let parsed = try OCIReference(parsing: reference)
        let imageName: ImageName
        if let name {
            imageName = try NewImageName.validate(name)
        } else {
            do {
                imageName = try NewImageName.validate(parsed.defaultImageName)
            } catch {
                throw CommandFailure(message: "cannot derive an image name from '\(reference)' (\(error)); give NAME explicitly", status: 2)
            }
        }
        let progress = output.progressReporter(eventsAreOutput: true)
        let store = try ImageStore(root: self.store.explicitRoot)
        let job = ImportJob()
        let watch = InterruptWatch(job: job)
        defer { watch.stop() }
        do {
            let image = try await OCIPuller.pull(parsed, as: imageName, into: store, options: options, job: job, progress: progress)
            if output.json {
                progress.result(["name": image.name, "path": image.path, "updated": true])
            } else {
                output.status("Pulled \(image.name) as \(image.path)")
            }
        } catch {
            progress.finish()
            if job.isCancelled {
                throw CommandFailure(message: "pull interrupted; no image was created (downloaded layers are kept in the cache)",
                                     status: InterruptWatch.interruptedStatus(for: job))
            }
            throw ImportRunner.withForceHint(error)
        }
    }
}
