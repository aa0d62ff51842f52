import ArgumentParser
import ImageStore

/// `imagectl read-only NAME [yes|no]`.
struct StoreReadOnly: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-only",
        abstract: "Show or set whether an image is read-only.",
        discussion: """
            Without yes/no, prints the current state. Read-only means: the btrfs read-only flag for \
            a subvolume, the immutable attribute (chattr +i) for a directory, no write permission bits \
            for a raw file, BLKROSET for a block device.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String
    @Argument(help: "yes or no; omit to print the current state.")
    var value: String?

    struct State: Encodable { var name: String; var readOnly: Bool }

    func validate() throws {
        if let value, Self.parse(value) == nil {
            throw ValidationError("expected yes or no, not '\(value)'")
        }
    }

    static func parse(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "yes", "y", "true", "1", "on": true
        case "no", "n", "false", "0", "off": false
        default: nil
        }
    }

    func run() async throws {
        let store = try store.openStore()
        if let value, let readOnly = Self.parse(value) {
            let image = try await store.setReadOnly(name, readOnly)
            if output.json { try output.printJSON(State(name: image.name, readOnly: image.readOnly)) }
            return
        }
        let image = try await store.image(named: name)
        if output.json {
            try output.printJSON(State(name: image.name, readOnly: image.readOnly))
        } else {
            Terminal.standardOutput(StoreFormat.yesNo(image.readOnly) + "\n")
        }
    }
}
