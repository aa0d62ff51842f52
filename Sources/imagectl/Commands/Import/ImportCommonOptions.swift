import ArgumentParser
import Foundation
import ImageStore
import Import
import LinuxSystem
import ProgressReport
import Dissect
import Logging

/// Options every import verb takes.
struct ImportCommonOptions: ParsableArguments {
    @Flag(name: .long, help: "Mark the new image read-only.")
    var readOnly = false

    @Flag(name: .long, help: "Replace an existing image of the same name in the pool.")
    var force = false

    @Option(name: .long, help: ArgumentHelp(
        "Abort when the input or its decompressed content (or a qcow2's virtual size) exceeds this many bytes; suffixes K, M, G, T (powers of 1024) accepted. Default 64G.",
        valueName: "bytes"))
    var maxSize: String?

    func importOptions() throws -> ImportOptions {
        var options = ImportOptions(readOnly: readOnly, force: force)
        if let maxSize {
            guard let bytes = Self.parseSize(maxSize), bytes > 0 else {
                throw ValidationError("--max-size: '\(maxSize)' is not a size in bytes (e.g. 1073741824 or 1G)")
            }
            options.maximumSize = bytes
        }
        return options
    }

    func validate() throws {
        _ = try importOptions()
    }

    static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        var factor: UInt64 = 1
        if digits.hasSuffix("B") && digits.count > 1 { digits.removeLast() }
        if let last = digits.last, let unit = units[last] {
            factor = unit
            digits.removeLast()
        }
        guard let value = UInt64(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
}

/// Shared steps of the import verbs: name, store, signals, the result line.
enum ImportRunner {
    /// The image name: given, or derived from the file name (FORMATS.md section 4).
    static func name(_ given: String?, file: String, derive: (String) -> String) throws -> ImageName {
        if let given { return try NewImageName.validate(given) }
        if file == "-" { throw ValidationError("a NAME is required when reading from standard input") }
        let derived = derive(file)
        do {
            return try NewImageName.validate(derived)
        } catch {
            throw CommandFailure(message: "cannot derive an image name from '\(file)' (\(error)); give NAME explicitly", status: 2)
        }
    }

    /// Runs `work` with SIGINT/SIGTERM turned into a clean cancellation and progress shown as
    /// the output options say (phase "import", over the bytes read from `source`; its size is
    /// the total when it is a regular file), then prints where the image went.
    /// `check` looks at the imported image once its progress line is finished, so that a warning
    /// it prints starts a line of its own.
    static func run(store options: StoreOptions, output: OutputOptions, source: String,
                    check: ((Image) -> Void)? = nil,
                    work: @Sendable (ImageStore, ImportJob) async throws -> Image) async throws {
        let store = try ImageStore(root: options.explicitRoot)
        let progress = output.progressReporter(eventsAreOutput: true)
        let job = ImportJob(progress: progress)
        let watch = InterruptWatch(job: job)
        defer { watch.stop() }
        let total = source == "-" ? nil : (try? FileStatus.stat(source)).flatMap { $0.kind == .regular ? $0.size : nil }
        progress.begin("import", source, total: total)
        do {
            let image = try await work(store, job)
            progress.end("import", "\(source) as \(image.provenance?.format ?? image.type.rawValue)",
                         bytes: total ?? image.usage)
            check?(image)
            if output.json {
                progress.result(["name": image.name, "path": image.path])
            } else {
                output.status("Imported \(image.name) as \(image.path)")
            }
        } catch {
            progress.finish()
            if job.isCancelled {
                throw CommandFailure(message: "import interrupted; nothing was kept", status: InterruptWatch.interruptedStatus(for: job))
            }
            throw ImportRunner.withForceHint(error)
        }
    }

    /// The store says only that a name is taken; the import and pull verbs have --force to
    /// replace it (clone and rename have none, so the store cannot say it for them).
    static func withForceHint(_ error: Error) -> Error {
        if case ImageStore.Error.exists(let name) = error {
            return CommandFailure(message: "image '\(name)' already exists (use --force to replace it)")
        }
        return error
    }

    /// import-raw and import-tar take a file; a directory is what import-fs takes, so say that
    /// instead of a bare "is a directory".
    static func refuseDirectory(_ file: String) throws {
        guard file != "-", (try? FileStatus.stat(file))?.kind == .directory else { return }
        throw CommandFailure(message: "'\(file)' is a directory; to import a directory tree use 'imagectl import-fs \(file)'")
    }

    /// import-raw takes any bytes, as systemd-import does; but bytes with neither a partition
    /// table nor a file system (a text file, a wrong download) are worth a word before someone
    /// tries to run them.
    static func warnIfNotADiskImage(_ image: Image) {
        do {
            _ = try Dissector.dissect(path: image.path, options: DissectOptions(requireRoot: false, loadSignaturePartitions: false))
        } catch Dissector.Error.noPartitionTableOrFilesystem {
            Logger(label: "imagectl").warning("\(image.path) has neither a partition table nor a file system that imagectl recognises; imported anyway")
        } catch {
            // Anything else (an odd table) is for dissect to report when the image is used.
        }
    }
}
