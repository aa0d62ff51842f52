import ArgumentParser
import Dissect
import Foundation

/// `imagectl dissect IMAGE`: what an image holds (partitions, filesystems, verity, OS release),
/// in systemd-dissect's table or JSON form.
struct DissectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dissect",
        abstract: "Show the partitions, filesystems, verity state and OS of a disk image.",
        discussion: """
            IMAGE is a raw disk image, a block device, a directory, or the name of an image in the \
            pool. Partition tables: GPT per the Discoverable Partitions Specification, MBR with one \
            Linux partition, or a bare filesystem. OS release, hostname, machine ID and "use as" need \
            a private read-only mount (root and loop devices); without them only the partitions are \
            shown. --json keys follow `systemd-dissect --json=short`.
            Verbs for images: dissect (with --list / --mtree), mount, umount, copy-from, copy-to, validate.
            """)

    @Argument(help: "Image file, block device, directory or pool image name.")
    var image: String

    @Flag(name: .customLong("list"), help: "List every file in the image (mounts it read-only, privately) instead of describing it.")
    var list = false

    @Flag(name: .customLong("mtree"), help: "Print an mtree manifest of the image (type, mode, owner, size, sha256, link target, mtime per file).")
    var mtree = false

    @OptionGroup var output: OutputOptions
    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let path = try ImageArgument.resolve(image, store: store)
        if list || mtree {
            let lines = try await ImageArgument.withTree(path, verity: verity, readOnly: true) { root in
                list ? try ImageTree.list(root) : try ImageTree.mtree(root)
            }
            Terminal.standardOutput(lines.map { $0 + "\n" }.joined())
            return
        }
        var dissected = try await verity.dissect(path)
        var notes: [String] = dissected.warnings
        if dissected.isDirectory {
            dissected.metadata = try ImageInspector.readMetadata(directory: path, imageName: ImageInspector.imageName(path))
        } else if ImageArgument.canMount {
            do {
                dissected.metadata = try ImageInspector.readMetadata(image: dissected)
            } catch {
                notes.append("could not read the OS metadata: \(error)")
            }
        } else {
            notes.append("not root: OS release, hostname and machine ID need a mount and are not shown")
        }
        for note in notes { output.note("note: \(note)") }
        if output.json {
            try output.printJSON(DissectJSON(dissected))
        } else {
            DissectTable.print(dissected, style: output.table)
        }
    }
}

/// The --json document: systemd-dissect's keys (name, size, hostname, machineId, osRelease,
/// use*, mounts[] with rw, designator, partition_uuid, partition_label, fstype, architecture,
/// verity, growfs, node, partno), plus imagectl's own (offset, size per partition, table,
/// rootHash and where verity data came from).
struct DissectJSON: Encodable {
    let image: DissectedImage

    init(_ image: DissectedImage) { self.image = image }

    enum Key: String, CodingKey {
        case name, size, hostname, machineId, osRelease, extensionRelease
        case useBootableUefi, useBootableContainer, usePortableService, useSystemExtension, useInitRDExtension, usePortableExtension
        case mounts, partitionTable, sectorSize, diskUuid, architecture, verity, warnings, protection
    }
    enum PartitionKey: String, CodingKey {
        case rw, designator, partition_uuid, partition_label, fstype, architecture, verity, growfs, node, partno
        case offset, size, type_uuid, fs_uuid, fs_label, encrypted
    }
    enum VerityKey: String, CodingKey {
        case rootHash, rootHashSource, rootHashSignatureSource, verityData, verityDataSource, usrHash, usrHashSource, usrHashSignatureSource
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(URL(fileURLWithPath: image.path).lastPathComponent, forKey: .name)
        if !image.isDirectory { try c.encode(image.size, forKey: .size) }
        if let m = image.metadata {
            try c.encodeIfPresent(m.hostname, forKey: .hostname)
            try c.encodeIfPresent(m.machineID, forKey: .machineId)
            try c.encodeIfPresent(m.osRelease, forKey: .osRelease)
            try c.encodeIfPresent(m.extensionRelease, forKey: .extensionRelease)
            try c.encode(image.useBootableUEFI, forKey: .useBootableUefi)
            try c.encode(image.useBootableContainer, forKey: .useBootableContainer)
            try c.encode(image.usePortableService, forKey: .usePortableService)
            try c.encode(image.useSystemExtension, forKey: .useSystemExtension)
            try c.encode(image.useInitrdExtension, forKey: .useInitRDExtension)
            try c.encode(image.usePortableExtension, forKey: .usePortableExtension)
        }
        try c.encode(image.isDirectory ? "directory" : image.table.rawValue, forKey: .partitionTable)
        if image.table == .gpt { try c.encode(image.sectorSize, forKey: .sectorSize) }
        try c.encodeIfPresent(image.diskUUID?.lowercased, forKey: .diskUuid)
        try c.encodeIfPresent(image.architecture?.rawValue, forKey: .architecture)
        var v = c.nestedContainer(keyedBy: VerityKey.self, forKey: .verity)
        let s = image.verity
        try v.encodeIfPresent(s.rootHash.map(VerityHex.encode), forKey: .rootHash)
        try v.encodeIfPresent(s.rootHashSource, forKey: .rootHashSource)
        try v.encodeIfPresent(s.signatureSource, forKey: .rootHashSignatureSource)
        try v.encodeIfPresent(s.verityDataPath, forKey: .verityData)
        try v.encodeIfPresent(s.verityDataSource, forKey: .verityDataSource)
        try v.encodeIfPresent(s.usrHash.map(VerityHex.encode), forKey: .usrHash)
        try v.encodeIfPresent(s.usrHashSource, forKey: .usrHashSource)
        try v.encodeIfPresent(s.usrSignatureSource, forKey: .usrHashSignatureSource)
        if !image.warnings.isEmpty { try c.encode(image.warnings, forKey: .warnings) }
        // imagectl's: how root and usr are protected once the signature was judged
        // (signed-and-trusted, verity-only, unprotected), with the signer.
        if !image.verityTrust.isEmpty { try c.encode(image.verityTrust, forKey: .protection) }

        // systemd lists data partitions first, verity and signature partitions after them.
        var mounts = c.nestedUnkeyedContainer(forKey: .mounts)
        for p in image.partitions {
            var m = mounts.nestedContainer(keyedBy: PartitionKey.self)
            try m.encode(p.readOnly ? "ro" : "rw", forKey: .rw)
            try m.encode(p.designator.rawValue, forKey: .designator)
            try m.encode(p.uuid?.lowercased, forKey: .partition_uuid)
            try m.encode(p.label, forKey: .partition_label)
            try m.encode(p.fstype, forKey: .fstype)
            try m.encode(p.architecture?.rawValue, forKey: .architecture)
            try m.encode(p.verity?.rawValue, forKey: .verity)
            try m.encode(p.growFileSystem, forKey: .growfs)
            // systemd prints the partition's device node; imagectl uses no partition nodes.
            try m.encode(String?.none, forKey: .node)
            try m.encode(p.number, forKey: .partno)
            try m.encode(p.offset, forKey: .offset)
            try m.encode(p.size, forKey: .size)
            try m.encodeIfPresent(p.typeUUID?.lowercased, forKey: .type_uuid)
            try m.encodeIfPresent(p.fsUUID, forKey: .fs_uuid)
            try m.encodeIfPresent(p.fsLabel, forKey: .fs_label)
            try m.encode(p.isEncrypted, forKey: .encrypted)
        }
    }
}

/// The human-readable form, laid out like systemd-dissect's.
enum DissectTable {
    static func print(_ image: DissectedImage, style: Output.TableStyle = Output.TableStyle()) {
        var text = ""
        func field(_ name: String, _ values: [String]) {
            guard let first = values.first else { return }
            let pad = String(repeating: " ", count: max(0, 10 - name.count))
            text += "\(pad)\(name): \(first)\n"
            for v in values.dropFirst() { text += String(repeating: " ", count: 12) + v + "\n" }
        }
        field("Name", [URL(fileURLWithPath: image.path).lastPathComponent])
        if !image.isDirectory {
            field("Size", [Output.size(image.size)])
            let table: String = switch image.table {
            case .gpt: "GPT (sector size \(image.sectorSize))"
            case .mbr: "MBR"
            case .none: "none (bare filesystem)"
            }
            field("Table", [table])
        }
        let s = image.verity
        if let hash = s.rootHash { field("Root hash", [VerityHex.encode(hash) + (s.rootHashSource.map { " (\($0))" } ?? "")]) }
        if let source = s.signatureSource { field("Signature", [source]) }
        if let hash = s.usrHash { field("Usr hash", [VerityHex.encode(hash) + (s.usrHashSource.map { " (\($0))" } ?? "")]) }
        if let data = s.verityDataPath { field("Hash tree", [data + (s.verityDataSource.map { " (\($0))" } ?? "")]) }
        field("Protection", image.verityTrust.map { "\($0.designator): \($0.summary)" })
        if let m = image.metadata {
            text += "\n"
            field("Hostname", [m.hostname ?? "-"])
            field("Machine ID", [m.machineID ?? "-"])
            field("OS Release", m.osRelease ?? ["-"])
            if let ext = m.extensionRelease { field("Ext. Rel.", ext) }
            text += "\n"
            func mark(_ b: Bool) -> String { b ? "✓" : "✗" }
            field("Use As", [
                "\(mark(image.useBootableUEFI)) bootable system for UEFI",
                "\(mark(image.useBootableContainer)) bootable system for container",
                "\(mark(image.usePortableService)) portable service",
                "\(mark(image.useSystemExtension)) extension for system",
                "\(mark(image.useInitrdExtension)) extension for initrd",
                "\(mark(image.usePortableExtension)) extension for portable service",
            ])
        }
        Terminal.standardOutput(text + "\n")
        guard !image.partitions.isEmpty else { return }
        let rows = image.partitions.map { p -> [String] in
            [p.readOnly ? "ro" : "rw", p.designator.rawValue, p.uuid?.lowercased ?? "-", p.label ?? "-", p.fstype ?? "-",
             p.architecture?.rawValue ?? "-", p.verity?.rawValue ?? "-", p.growFileSystem ? "yes" : "no",
             p.number.map(String.init) ?? "-", String(p.offset), Output.size(p.size)]
        }
        Output.printTable(header: ["rw", "designator", "partition uuid", "partition label", "fstype", "architecture",
                                   "verity", "growfs", "partno", "offset", "size"], rows: rows, style: style)
    }
}
