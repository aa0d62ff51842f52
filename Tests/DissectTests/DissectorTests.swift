import Dissect
import Foundation
import Testing
import TestSupport

/// Designator selection, duplicates, pairing and systemd's errors on GPTs built in memory and
/// written to a file (no filesystems inside: fstype stays nil). No privileges needed.
@Suite struct DissectorTests {
    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory(prefix: "dissector") }

    func type(_ d: PartitionDesignator, _ arch: Architecture? = nil) -> UUID {
        PartitionType.typeUUID(d, architecture: d.isArchitectureSpecific ? (arch ?? .native) : nil)!
    }

    func write(_ entries: [GPTTestImage.Entry], name: String = "disk.raw") throws -> String {
        var img = GPTTestImage()
        img.sectors = 8192
        img.entries = entries
        let path = dir.appending(name)
        try Data(img.build()).write(to: URL(fileURLWithPath: path))
        return path
    }

    func dissect(_ entries: [GPTTestImage.Entry], rootHash: String? = nil) throws -> DissectedImage {
        try Dissector.dissect(path: write(entries), options: DissectOptions(verity: ExplicitVerityOptions(rootHash: rootHash)))
    }

    @Test func designatorsFromTypeGUIDs() throws {
        let image = try dissect([
            .init(type: type(.root), first: 100, last: 999, attributes: GPTPartitionEntry.attributeGrowFileSystem, name: "root"),
            .init(type: type(.home), first: 1000, last: 1999, attributes: GPTPartitionEntry.attributeReadOnly, name: "home"),
            .init(type: type(.esp), first: 2000, last: 2999, name: "esp"),
            .init(type: type(.swap), first: 3000, last: 3999),
            .init(type: UUID(), first: 4000, last: 4999, name: "unknown type"),
        ])
        #expect(image.table == .gpt)
        #expect(image.partitions.map(\.designator) == [.root, .home, .esp, .swap])
        let root = try #require(image.partition(.root))
        #expect(root.architecture == .native && root.growFileSystem && !root.readOnly && root.number == 1 && root.offset == 100 * 512)
        #expect(root.size == 900 * 512 && root.label == "root")
        #expect(image.partition(.home)?.readOnly == true)
        #expect(image.partition(.home)?.architecture == nil)
        #expect(image.warnings.contains { $0.contains("partition 5") })
    }

    @Test func nativeArchitectureWinsOverOthers() throws {
        let other: Architecture = Architecture.native == .x86_64 ? .arm64 : .x86_64
        let image = try dissect([
            .init(type: type(.root, other), first: 100, last: 999, name: "foreign"),
            .init(type: type(.root, .native), first: 1000, last: 1999, name: "native"),
        ])
        #expect(image.partition(.root)?.label == "native")
        #expect(image.partition(.root)?.architecture == .native)
    }

    @Test func abRootsPickTheHigherLabelVersion() throws {
        let image = try dissect([
            .init(type: type(.root), first: 100, last: 999, name: "os_1.10"),
            .init(type: type(.root), first: 1000, last: 1999, name: "os_1.9"),
            .init(type: type(.root), first: 2000, last: 2999, name: "os_1.2"),
        ])
        #expect(image.partition(.root)?.label == "os_1.10")
        #expect(image.partition(.root)?.number == 1)
    }

    @Test func firstWinsForUnversionedDesignators() throws {
        let image = try dissect([
            .init(type: type(.root), first: 100, last: 999),
            .init(type: type(.home), first: 1000, last: 1999, name: "home-b"),
            .init(type: type(.home), first: 2000, last: 2999, name: "home-z"),
        ])
        #expect(image.partition(.home)?.label == "home-b")
    }

    @Test func noAutoPartitionsAreSkipped() throws {
        let image = try dissect([
            .init(type: type(.root), first: 100, last: 999, attributes: GPTPartitionEntry.attributeNoAuto, name: "skip-me"),
            .init(type: type(.root), first: 1000, last: 1999, name: "a"),
            .init(type: type(.home), first: 2000, last: 2999, attributes: GPTPartitionEntry.attributeNoAuto),
        ])
        #expect(image.partition(.root)?.label == "a")
        #expect(image.partition(.home) == nil)
    }

    @Test func singleGenericPartitionIsRoot() throws {
        let image = try dissect([.init(type: PartitionType.linuxGeneric, first: 100, last: 999, name: "data")])
        let root = try #require(image.partition(.root))
        #expect(root.architecture == nil && root.number == 1)
    }

    @Test func severalGenericPartitionsWithoutRootAreAmbiguous() throws {
        #expect(throws: Dissector.Error.multipleGeneric) {
            try dissect([
                .init(type: PartitionType.linuxGeneric, first: 100, last: 999),
                .init(type: PartitionType.linuxGeneric, first: 1000, last: 1999),
            ])
        }
        #expect("\(Dissector.Error.multipleGeneric)".contains("ENOTUNIQ"))
    }

    @Test func verityWithoutDataIsRefused() throws {
        #expect(throws: Dissector.Error.verityWithoutData(.rootVerity)) {
            try dissect([
                .init(type: type(.usr), first: 100, last: 999),
                .init(type: type(.rootVerity), first: 1000, last: 1999),
            ])
        }
        #expect("\(Dissector.Error.verityWithoutData(.rootVerity))".contains("EADDRNOTAVAIL"))
    }

    @Test func rootAndUsrOfDifferentArchitecturesAreRefused() throws {
        let other: Architecture = Architecture.native == .x86_64 ? .arm64 : .x86_64
        #expect(throws: Dissector.Error.architectureMismatch(root: Architecture.native.rawValue, usr: other.rawValue)) {
            try dissect([
                .init(type: type(.root, .native), first: 100, last: 999),
                .init(type: type(.usr, other), first: 1000, last: 1999),
            ])
        }
    }

    @Test func missingRootIsRefused() throws {
        #expect(throws: Dissector.Error.noRoot) {
            try dissect([.init(type: type(.home), first: 100, last: 999)])
        }
        #expect("\(Dissector.Error.noRoot)".contains("ENXIO"))
    }

    /// A known root hash names the data partition (first half) and the hash partition (second
    /// half) by UUID: with A/B pairs, the hash decides, not the label.
    @Test func rootHashPairsPartitionsByUUID() throws {
        let hash = (0..<32).map { UInt8($0 + 1) }
        let hex = hash.map { String(format: "%02x", $0) }.joined()
        let dataUUID = UUID.fromBytes(Array(hash[0..<16]))
        let treeUUID = UUID.fromBytes(Array(hash[16..<32]))
        let entries: [GPTTestImage.Entry] = [
            .init(type: type(.root), uuid: dataUUID, first: 100, last: 999, name: "os_1"),
            .init(type: type(.rootVerity), uuid: treeUUID, first: 1000, last: 1999, name: "os_1-verity"),
            .init(type: type(.root), first: 2000, last: 2999, name: "os_2"),
            .init(type: type(.rootVerity), first: 3000, last: 3999, name: "os_2-verity"),
        ]
        let withoutHash = try dissect(entries)
        #expect(withoutHash.partition(.root)?.label == "os_2")
        #expect(withoutHash.partition(.root)?.verity == VerityState.no)
        #expect(withoutHash.partition(.root)?.readOnly == false)

        let withHash = try dissect(entries, rootHash: hex)
        #expect(withHash.partition(.root)?.uuid == dataUUID)
        #expect(withHash.partition(.rootVerity)?.uuid == treeUUID)
        #expect(withHash.partition(.root)?.verity == VerityState.yes)
        #expect(withHash.partition(.root)?.readOnly == true)
        #expect(withHash.partition(.rootVerity)?.readOnly == true)
    }

    @Test func rootHashMatchingNoPartitionIsRefused() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(throws: Dissector.Error.self) {
            try dissect([
                .init(type: type(.root), first: 100, last: 999),
                .init(type: type(.rootVerity), first: 1000, last: 1999),
            ], rootHash: hex)
        }
    }

    @Test func mbrWithOneLinuxPartition() throws {
        var disk = [UInt8](repeating: 0, count: 4 << 20)
        disk[446] = 0x80
        disk[446 + 4] = 0x83
        putLE(&disk, 446 + 8, 2048, 4)
        putLE(&disk, 446 + 12, 4096, 4)
        disk[462 + 4] = 0x0C  // a FAT partition: ignored
        putLE(&disk, 462 + 8, 6144, 4)
        putLE(&disk, 462 + 12, 1024, 4)
        disk[510] = 0x55
        disk[511] = 0xAA
        let path = dir.appending("mbr.raw")
        try Data(disk).write(to: URL(fileURLWithPath: path))
        let image = try Dissector.dissect(path: path)
        #expect(image.table == .mbr)
        #expect(image.partitions.count == 1)
        let root = try #require(image.partition(.root))
        #expect(root.number == 1 && root.offset == 2048 * 512 && root.size == 4096 * 512 && root.uuid == nil)

        // A record reaching past the end of the image is refused.
        putLE(&disk, 446 + 12, 1 << 30, 4)
        try Data(disk).write(to: URL(fileURLWithPath: path))
        #expect(throws: MBR.Error.partitionPastEnd(number: 1)) { try Dissector.dissect(path: path) }
    }

    @Test func garbageIsNotADiskImage() throws {
        let path = dir.appending("garbage.raw")
        try Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: URL(fileURLWithPath: path))
        #expect { try Dissector.dissect(path: path) } throws: { "\($0)".contains("not a disk image") }
        let empty = dir.appending("empty.raw")
        FileManager.default.createFile(atPath: empty, contents: Data())
        #expect(throws: Dissector.Error.self) { try Dissector.dissect(path: empty) }
    }
}
