import ArgumentParser
import ImageStore

/// `imagectl show NAME`: everything the store knows about one image.
struct StoreShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show an image: type, path, usage, origin, verity data, side files, locks, limit."
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The image name.", completion: Completions.imageNames)
    var name: String

    func run() async throws {
        let details = try await store.openStore().details(named: name)
        if output.json {
            try output.printJSON(details)
            return
        }
        let image = details.image
        var lines: [(String, String)] = [
            ("Name", image.name),
            ("Type", image.type.rawValue),
            ("Path", image.path),
            ("Read-only", StoreFormat.yesNo(image.readOnly) + (image.vendor ? " (vendor image)" : "")),
            ("Hidden", StoreFormat.yesNo(image.hidden)),
            ("Usage", Output.size(image.usage)),
            ("Created", StoreFormat.date(image.created)),
            ("Modified", StoreFormat.date(image.modified)),
        ]
        if let provenance = image.provenance {
            lines.append(("Source", provenance.source))
            if let format = provenance.format { lines.append(("Format", format)) }
            lines.append(("SHA256", provenance.sha256 ?? "-"))
            lines.append(("Imported", StoreFormat.date(provenance.importedAt)))
        } else {
            lines.append(("Source", "-"))
        }
        let verity = details.verity
        if let hash = verity.rootHash {
            lines.append(("Root hash", "\(hash) (from \(verity.rootHashSource ?? "?"))"))
        } else {
            lines.append(("Root hash", "-"))
        }
        lines.append(("Signature", verity.rootHashSignature ?? "-"))
        lines.append(("Hash tree", verity.hashTree ?? "-"))
        if let hash = verity.usrHash {
            lines.append(("Usr hash", "\(hash) (from \(verity.usrHashSource ?? "?"))"))
            lines.append(("Usr signature", verity.usrHashSignature ?? "-"))
        }
        lines.append(("Side files", details.sideFiles.isEmpty ? "-" : details.sideFiles.joined(separator: "\n")))
        if details.locked {
            let pids = details.lockHolders.filter { $0 > 0 }.map(String.init)
            lines.append(("Locked", pids.isEmpty ? "yes" : "yes (pid \(pids.joined(separator: ", ")))"))
        } else {
            lines.append(("Locked", "no"))
        }
        lines.append(("Limit", Output.size(details.limit)))

        let width = lines.map(\.0.count).max() ?? 0
        var text = ""
        for (key, value) in lines {
            let pad = String(repeating: " ", count: width - key.count)
            let valueLines = value.split(separator: "\n", omittingEmptySubsequences: false)
            text += "\(pad)\(key): \(valueLines.first ?? "")\n"
            for more in valueLines.dropFirst() {
                text += String(repeating: " ", count: width + 2) + more + "\n"
            }
        }
        Terminal.standardOutput(text)
    }
}
