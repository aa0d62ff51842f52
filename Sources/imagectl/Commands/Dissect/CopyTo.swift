import ArgumentParser
import Dissect
import Foundation

/// `imagectl copy-to IMAGE SRC|- PATH`.
struct CopyToCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-to",
        abstract: "Copy a file or directory into an image.",
        discussion: """
            The image is mounted read-write and privately. The parent of PATH must exist inside the \
            image and is resolved there (symlinks cannot lead out of it). SRC `-` reads a regular \
            file from standard input.
            """)

    @Argument(help: "Image file, block device, directory or pool image name.")
    var image: String

    @Argument(help: "Source file or directory on the host, or - for standard input.")
    var source: String

    @Argument(help: "Destination path inside the image.")
    var path: String

    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let imagePath = try ImageArgument.resolve(image, store: store)
        if source != "-", !FileManager.default.fileExists(atPath: source) {
            throw CommandFailure(message: "\(source): no such file or directory")
        }
        let (src, dest) = (source, path)
        try await ImageArgument.withTree(imagePath, verity: verity, readOnly: false) { root in
            try ImageTree.copyIn(root: root, source: src, path: dest)
        }
    }
}
