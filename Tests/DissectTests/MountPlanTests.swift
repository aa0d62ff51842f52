import Dissect
import Foundation
import Testing

/// The mount plan as a value: order, targets, flags and options of FORMATS.md §1.
@Suite struct MountPlanTests {
    func part(_ d: PartitionDesignator, _ n: Int, _ fstype: String, readOnly: Bool = false, verity: VerityState? = nil) -> DissectedPartition {
        DissectedPartition(designator: d, number: n, fstype: fstype, offset: UInt64(n) << 20, size: 1 << 20, readOnly: readOnly, verity: verity)
    }

    func targets(_ plan: MountPlan) -> [String] { plan.mounts.map { $0.target.description } }

    @Test func fullImageMountsInSpecificationOrder() throws {
        // Partitions given in a scrambled order: the plan orders them itself.
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.esp, 1, "vfat"), part(.tmp, 2, "ext4"), part(.var, 3, "xfs"), part(.swap, 4, "swap"),
            part(.srv, 5, "btrfs"), part(.home, 6, "ext4"), part(.xbootldr, 7, "vfat"), part(.usr, 8, "erofs"), part(.root, 9, "ext4"),
        ])
        let plan = try MountPlan.make(image)
        #expect(targets(plan) == ["/", "/usr", "/home", "/srv", "/var", "/var/tmp", "/boot", "/efi or /boot"])
        #expect(plan.mounts.map(\.designator) == [.root, .usr, .home, .srv, .var, .tmp, .xbootldr, .esp])
        #expect(!plan.mounts.contains { $0.designator == .swap })
        #expect(plan.mounts.filter { !$0.noDev }.isEmpty)
        #expect(plan.mounts[0].source == .partition(number: 9, offset: 9 << 20, size: 1 << 20))
        #expect(plan.mounts[0].options.isEmpty)  // read-write ext4: no norecovery
    }

    @Test func bootPartitionsAreNoSuidNoExecWithUmaskOnVfat() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4"), part(.esp, 2, "vfat"), part(.xbootldr, 3, "ext4"),
        ])
        let plan = try MountPlan.make(image)
        let esp = try #require(plan.mounts.first { $0.designator == .esp })
        #expect(esp.noSuid && esp.noExec && esp.options == ["umask=0077"])
        #expect(esp.target == .espDirectory)
        let xbootldr = try #require(plan.mounts.first { $0.designator == .xbootldr })
        #expect(xbootldr.noSuid && xbootldr.noExec && xbootldr.options.isEmpty)
        #expect(xbootldr.target == .path("/boot"))
        let root = try #require(plan.mounts.first)
        #expect(!root.noSuid && !root.noExec)
    }

    @Test func readOnlyAddsNorecoveryToJournallingFilesystems() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4"), part(.home, 2, "xfs"), part(.srv, 3, "btrfs"), part(.var, 4, "erofs"),
        ])
        let plan = try MountPlan.make(image, readOnly: true)
        #expect(plan.mounts.filter { !$0.readOnly }.isEmpty)
        #expect(plan.mounts.map(\.options) == [["norecovery"], ["norecovery"], ["norecovery"], []])
        let rw = try MountPlan.make(image)
        #expect(rw.mounts.filter { $0.readOnly || !$0.options.isEmpty }.isEmpty)
    }

    @Test func readOnlyPartitionFlagMakesThatMountReadOnly() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4", readOnly: true), part(.home, 2, "ext4"),
        ])
        let plan = try MountPlan.make(image)
        #expect(plan.mounts[0].readOnly && plan.mounts[0].options == ["norecovery"])
        #expect(!plan.mounts[1].readOnly)
    }

    @Test func usrOnlyImageGetsTmpfsRoot() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [part(.usr, 1, "erofs")])
        let plan = try MountPlan.make(image)
        #expect(plan.mounts.count == 2)
        #expect(plan.mounts[0].source == .tmpfs && plan.mounts[0].target == .path("/") && plan.mounts[0].fstype == "tmpfs")
        #expect(plan.mounts[1].designator == .usr && plan.mounts[1].target == .path("/usr"))
    }

    @Test func verityRootRequiresVerificationAndIsReadOnly() throws {
        var settings = VeritySettings()
        settings.rootHash = Array(repeating: 0xAB, count: 32)
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4", verity: .yes), part(.rootVerity, 2, "DM_verity_hash"),
        ], verity: settings)
        let plan = try MountPlan.make(image)
        #expect(plan.mounts.count == 1)
        let root = plan.mounts[0]
        #expect(root.readOnly)
        let requirement = try #require(root.verity)
        #expect(requirement.rootHash == settings.rootHash)
        #expect(requirement.hashOffset == 2 << 20 && requirement.hashSize == 1 << 20)
    }

    @Test func verityPartitionWithoutHashIsNotARequirement() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4", verity: .no), part(.rootVerity, 2, "DM_verity_hash"),
        ])
        let plan = try MountPlan.make(image)
        #expect(plan.mounts[0].verity == nil && !plan.mounts[0].readOnly)
    }

    @Test func nothingToMountIsAnError() {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [part(.home, 1, "ext4")])
        #expect(throws: MountPlan.Error.nothingToMount) { try MountPlan.make(image) }
    }

    @Test func partitionWithoutFilesystemIsAnError() {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            DissectedPartition(designator: .root, number: 1, fstype: nil, offset: 0, size: 1),
        ])
        #expect(throws: MountPlan.Error.self) { try MountPlan.make(image) }
    }

    @Test func encryptedPartitionIsMarked() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [
            part(.root, 1, "ext4"), part(.home, 2, "crypto_LUKS"),
        ])
        let plan = try MountPlan.make(image)
        #expect(plan.mounts[1].encrypted)
        #expect(!plan.mounts[0].encrypted)
    }

    @Test func planIsCodableAndStable() throws {
        let image = DissectedImage(path: "/x.raw", size: 1 << 30, table: .gpt, partitions: [part(.root, 1, "ext4"), part(.esp, 2, "vfat")])
        let plan = try MountPlan.make(image)
        let decoded = try JSONDecoder().decode(MountPlan.self, from: JSONEncoder().encode(plan))
        #expect(decoded == plan)
        #expect(try MountPlan.make(image) == plan)
    }
}
