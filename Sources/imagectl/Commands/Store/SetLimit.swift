import ArgumentParser
import ImageStore

/// `imagectl set-limit NAME BYTES|-`.
struct StoreSetLimit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-limit",
        abstract: "Limit the disk space of a btrfs subvolume image.",
        discussion: """
            Sets the btrfs qgroup limit on referenced bytes. Quota must already be enabled on the \
            filesystem ('btrfs quota enable PATH'); imagectl never enables it, because quota costs \
            every write on the filesystem.
            """
    )

    @OptionGroup var store: StoreOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String
    @Argument(help: "The limit in bytes, with an optional K, M, G or T suffix (powers of 1024); '-' or 'none' removes it.")
    var size: String

    func validate() throws {
        if size != "-" && size.lowercased() != "none" && StoreFormat.parseSize(size) == nil {
            throw ValidationError("invalid size '\(size)' (expected e.g. 512M, 10G or '-')")
        }
    }

    func run() async throws {
        let bytes = size == "-" || size.lowercased() == "none" ? nil : StoreFormat.parseSize(size)
        try await store.openStore().setLimit(name, bytes: bytes)
    }
}
