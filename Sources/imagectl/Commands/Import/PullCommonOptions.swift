import ArgumentParser
import Foundation
import ImageStore
import Import
import Pull

/// Options `pull-raw` and `pull-tar` share.
struct PullCommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "What the download is checked against: 'no', 'checksum' (<file>.sha256, else SHA256SUMS, in the same directory), 'signature' (the checksum file must also carry a gpg signature from --keyring; the default), or a literal 64-digit SHA-256 of the file as served.",
        valueName: "no|checksum|signature|sha256"))
    var verify = "signature"

    @Option(name: .long, help: ArgumentHelp(
        "The gpg keyring signatures are checked against (default /etc/systemd/import-pubring.gpg, then /usr/lib/systemd/import-pubring.gpg). Keys are never imported from the download.",
        valueName: "file"))
    var keyring: String?

    @Option(name: .long, help: ArgumentHelp(
        "Another URL of the same file, tried (with its own checksum and signature files) when the ones before it fail. Repeatable; tried in order.",
        valueName: "url"))
    var mirror: [String] = []

    @Flag(name: .long, help: "Mark the new image read-only.")
    var readOnly = false

    @Flag(name: .long, help: "Replace an existing image of the same name in the pool.")
    var force = false

    @Flag(name: .long, help: "Keep a pristine read-only copy of the verified download in the pool under a hidden name made of the URL and ETag (.raw-<url>.<etag>.raw, .tar-<url>.<etag>) and make the image a clone of it (btrfs snapshot or reflink/copy). A later pull of the same URL with --keep-download whose ETag still matches clones the kept copy without downloading.")
    var keepDownload = false

    @Option(name: .long, help: ArgumentHelp(
        "Abort when the download or its decompressed content exceeds this many bytes; suffixes K, M, G, T (powers of 1024) accepted. Default 64G.",
        valueName: "bytes"))
    var maxSize: String?

    func pullOptions() throws -> PullOptions {
        var options = PullOptions(keyring: keyring, force: force, readOnly: readOnly, keepDownload: keepDownload, mirrors: mirror)
        switch verify {
        case "no": options.verify = .no
        case "checksum": options.verify = .checksum
        case "signature": options.verify = .signature
        default:
            let hex = verify.lowercased()
            guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else {
                throw ValidationError("--verify: '\(verify)' is not no, checksum, signature or a 64-digit hex SHA-256")
            }
            options.verify = .digest(hex)
        }
        if let maxSize {
            guard let bytes = ImportCommonOptions.parseSize(maxSize), bytes > 0 else {
                throw ValidationError("--max-size: '\(maxSize)' is not a size in bytes (e.g. 1073741824 or 1G)")
            }
            options.maximumSize = bytes
        }
        for url in mirror where URL(string: url)?.scheme == nil {
            throw ValidationError("--mirror: '\(url)' is not a URL")
        }
        return options
    }

    func validate() throws {
        _ = try pullOptions()
    }
}

/// Shared steps of the pull verbs: name, progress style, signals, the result line.
enum PullRunner {
    /// With --json the progress events (JSON lines: begin, progress, end, note, done) are the
    /// output, on standard output.
    static func run(_ payload: Importer.StreamPayload, url: String, name given: String?, store storeOptions: StoreOptions,
                    common: PullCommonOptions, output: OutputOptions) async throws {
        let options = try common.pullOptions()
        let imageName: ImageName
        if let given {
            imageName = try NewImageName.validate(given)
        } else {
            let derived = Puller.localName(for: url, payload: payload)
            do {
                imageName = try NewImageName.validate(derived)
            } catch {
                throw CommandFailure(message: "cannot derive an image name from '\(url)' (\(error)); give NAME explicitly", status: 2)
            }
        }
        // The bar goes to a terminal on standard error; otherwise each phase's final line goes to
        // standard output, so that standard error carries only the error line of a failure.
        let progress = output.progressReporter(eventsAreOutput: true)
        let store = try ImageStore(root: storeOptions.explicitRoot)
        let job = ImportJob()
        let watch = InterruptWatch(job: job)
        defer { watch.stop() }
        do {
            switch try await Puller.pull(payload, url: url, as: imageName, into: store, options: options, job: job, progress: progress) {
            case .pulled(let image):
                if output.json {
                    progress.result(["name": image.name, "path": image.path, "updated": true])
                } else {
                    output.status("Pulled \(image.name) as \(image.path)")
                }
            case .upToDate(let name, let etag):
                if output.json {
                    progress.result(["name": name, "etag": etag, "updated": false])
                } else {
                    output.status("Image \(name) is up to date (ETag \(etag)); nothing downloaded")
                }
            }
        } catch {
            progress.finish()
            if job.isCancelled {
                throw CommandFailure(message: "pull interrupted; no image was created (the partial download is kept to resume)",
                                     status: InterruptWatch.interruptedStatus(for: job))
            }
            throw ImportRunner.withForceHint(error)
        }
    }
}
