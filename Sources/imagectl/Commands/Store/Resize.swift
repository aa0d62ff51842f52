import ArgumentParser
import ImageStore
import VMRunner

/// `imagectl resize NAME SIZE`: a raw pool image grown as `vm --grow-image=` grows one.
struct StoreResize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize",
        abstract: "Grow a raw image of the pool (sparse), moving its GPT backup to the new end.",
        discussion: """
            SIZE is the new size in bytes with an optional K, M, G or T suffix (powers of 1024), or \\
            +SIZE to add that much. The file grows sparse (the new space takes no blocks) and a GPT's \\
            backup header and partition array move to the new end (the primary header's alternate \\
            and last usable LBA and the protective MBR follow), so that growpart or systemd-repart \\
            can grow the last partition; the partitions and file systems themselves are not \\
            touched. Images are never shrunk: a SIZE below the image's size is an error. Only raw \\
            images can be resized (not directory trees); a read-only or running image is refused. \\
            The image is locked while it grows.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String
    @Argument(help: ArgumentHelp("The new size, or +SIZE.", valueName: "size"))
    var size: String

    struct Resized: Encodable {
        var name: String
        var oldSize: UInt64
        var newSize: UInt64
        var movedGPT: Bool
    }

    func run() async throws {
        let requested = try GrowImage.parse(size, option: "SIZE")
        let store = try store.openStore()
        let image = try await store.image(named: name)
        switch image.type {
        case .raw: break
        case .block: throw CommandFailure(message: "\(image.name) is a block device; only raw image files can be resized")
        case .directory, .subvolume: throw CommandFailure(message: "\(image.name) is a directory tree; only raw images can be resized")
        }
        if image.readOnly { throw CommandFailure(message: "\(image.name) is read-only (imagectl read-only \(image.name) no)") }
        let lock = try ImageLock.lock(path: image.path, kind: .exclusive)
        defer { lock.release() }
        let result = try GrowImage.grow(image.path, to: requested, option: "SIZE", value: size)
        if output.json {
            try output.printJSON(Resized(name: image.name, oldSize: result.oldSize, newSize: result.newSize, movedGPT: result.movedGPT))
        } else if result.newSize == result.oldSize {
            Terminal.standardError("\(image.name) is already \(result.newSize) bytes.\n")
        } else {
            Terminal.standardError(GrowImage.describe(result, path: image.name)[0] + "\n")
        }
    }
}
