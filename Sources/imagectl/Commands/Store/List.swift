import ArgumentParser
import Foundation
import ImageStore

/// `imagectl list`: the images on the search path, like `machinectl list-images`.
struct StoreList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the images in the store.",
        discussion: """
            Columns: NAME TYPE RO USAGE CREATED MODIFIED. USAGE is the space allocated on disk (like du). \
            --json keys are the columns, as machinectl list-images --json prints them: name, type, ro \
            (boolean), usage (bytes), created and modified (microseconds since the epoch); null where unknown.
            """
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: [.long, .short], help: "Also list hidden images (names starting with '.').")
    var all = false

    func run() async throws {
        let images = try await store.openStore().list(includeHidden: all)
        if output.json {
            try output.printJSON(images.map(Row.init))
            return
        }
        if images.isEmpty {
            if output.table.legend { Terminal.standardOutput("No images.\n") }
            return
        }
        let rows = images.map { image in
            [image.name, image.type.rawValue, StoreFormat.yesNo(image.readOnly), Output.size(image.usage),
             StoreFormat.date(image.created), StoreFormat.date(image.modified)]
        }
        Output.printTable(header: ["name", "type", "ro", "usage", "created", "modified"], rows: rows,
                          footer: "\(images.count) images listed.", style: output.table)
    }

    /// One image as `machinectl list-images --json` prints it: the table's columns.
    struct Row: Encodable {
        var name: String
        var type: String
        var ro: Bool
        var usage: UInt64?
        var created: UInt64?
        var modified: UInt64?

        init(_ image: Image) {
            name = image.name
            type = image.type.rawValue
            ro = image.readOnly
            usage = image.usage
            created = image.created.map(Self.microseconds)
            modified = image.modified.map(Self.microseconds)
        }

        static func microseconds(_ date: Date) -> UInt64 { UInt64(max(0, date.timeIntervalSince1970 * 1_000_000).rounded()) }

        func encode(to encoder: Encoder) throws {
            // Every column, null where unknown (the synthesized encoding would leave keys out).
            enum Key: String, CodingKey { case name, type, ro, usage, created, modified }
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(name, forKey: .name)
            try c.encode(type, forKey: .type)
            try c.encode(ro, forKey: .ro)
            try c.encode(usage, forKey: .usage)
            try c.encode(created, forKey: .created)
            try c.encode(modified, forKey: .modified)
        }
    }
}
