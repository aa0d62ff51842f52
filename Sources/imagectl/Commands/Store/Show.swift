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
        if let oci = details.oci { lines += Self.ociLines(oci) }

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

    /// The OCI image config of a pulled image, as podman inspect names its fields.
    static func ociLines(_ oci: OCIMetadata) -> [(String, String)] {
        func words(_ list: [String]?) -> String {
            guard let list, !list.isEmpty else { return "-" }
            return list.map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
        }
        let config = oci.config
        var lines: [(String, String)] = [
            ("OCI reference", oci.reference),
            ("OCI manifest", oci.manifestDigest),
            ("OCI platform", oci.platform ?? "-"),
            ("OCI layers", "\(oci.layers.count)"),
            ("Entrypoint", words(config.entrypoint)),
            ("Cmd", words(config.cmd)),
            ("Env", (config.env ?? []).isEmpty ? "-" : (config.env ?? []).joined(separator: "\n")),
            ("WorkingDir", config.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "-"),
            ("User", config.user.flatMap { $0.isEmpty ? nil : $0 } ?? "-"),
            ("ExposedPorts", (config.exposedPorts ?? []).isEmpty ? "-" : (config.exposedPorts ?? []).joined(separator: " ")),
        ]
        let labels = (config.labels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        lines.append(("Labels", labels.isEmpty ? "-" : labels.joined(separator: "\n")))
        return lines
    }
}
