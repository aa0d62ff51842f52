import ArgumentParser
import Dissect
import Foundation

/// `imagectl validate IMAGE`: parse and probe only.
struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check that an image can be dissected (and meets --image-policy), without mounting anything.",
        discussion: "Parses the partition table and probes the filesystems. Needs no privileges for an image file. Exit status 0 when the image is usable.")

    @Argument(help: "Image file, block device or pool image name.")
    var image: String

    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let path = try ImageArgument.resolve(image, store: store)
        guard !ImageArgument.isDirectory(path) else {
            Terminal.standardOutput("OK: \(path) is a directory tree\n")
            return
        }
        let dissected = try await verity.dissect(path)
        _ = try MountPlan.make(dissected)
        for warning in dissected.warnings { Terminal.standardError("note: \(warning)\n") }
        let names = dissected.partitions.map(\.designator.rawValue).joined(separator: ", ")
        Terminal.standardOutput("OK: \(URL(fileURLWithPath: path).lastPathComponent): \(dissected.table.rawValue), \(names)\n")
    }
}
