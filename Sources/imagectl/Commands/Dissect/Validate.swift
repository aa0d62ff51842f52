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
    @OptionGroup var output: OutputOptions

    /// --json: what was found usable (systemd-dissect's camelCase keys where it has them).
    struct Validated: Encodable {
        var name: String
        var path: String
        var partitionTable: String
        var designators: [String]
        var valid = true
    }

    func run() async throws {
        let path = try ImageArgument.resolve(image, store: store)
        guard !ImageArgument.isDirectory(path) else {
            if output.json {
                try output.printJSON(Validated(name: URL(fileURLWithPath: path).lastPathComponent, path: path,
                                               partitionTable: "directory", designators: []))
            } else {
                output.status("OK: \(path) is a directory tree")
            }
            return
        }
        let dissected = try await verity.dissect(path)
        _ = try MountPlan.make(dissected)
        for warning in dissected.warnings { output.note("note: \(warning)") }
        let designators = dissected.partitions.map(\.designator.rawValue)
        if output.json {
            try output.printJSON(Validated(name: URL(fileURLWithPath: path).lastPathComponent, path: path,
                                           partitionTable: dissected.table.rawValue, designators: designators))
        } else {
            output.status("OK: \(URL(fileURLWithPath: path).lastPathComponent): \(dissected.table.rawValue), \(designators.joined(separator: ", "))")
        }
    }
}
