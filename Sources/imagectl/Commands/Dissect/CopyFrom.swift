import ArgumentParser
import Dissect
import Foundation
import LinuxSystem

/// `imagectl copy-from IMAGE PATH [DEST|-]`.
struct CopyFromCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-from",
        abstract: "Copy a file or directory out of an image.",
        discussion: """
            The image is mounted read-only and privately. PATH is resolved inside the image \
            (symlinks cannot lead out of it). DEST defaults to the file name of PATH in the current \
            directory; `-` writes a regular file to standard output. Directories are copied \
            recursively with owners, modes and links kept (cp -a).
            """)

    @Argument(help: "Image file, block device, directory or pool image name.")
    var image: String

    @Argument(help: "Path inside the image.")
    var path: String

    @Argument(help: "Destination path, or - for standard output.")
    var destination: String?

    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let imagePath = try ImageArgument.resolve(image, store: store)
        let inside = path
        let dest = destination ?? URL(fileURLWithPath: path).lastPathComponent
        // cp would open an existing FIFO or device at DEST for writing and block (or write to
        // the device): only a new name, a regular file or a directory is a destination.
        if dest != "-", FileSystem.exists(dest) {
            try UserFile.check(dest, accepting: [.regular, .directory])
        }
        try await ImageArgument.withTree(imagePath, verity: verity, readOnly: true) { root in
            try ImageTree.copyOut(root: root, path: inside, destination: dest)
        }
    }
}
