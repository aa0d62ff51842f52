import Dissect
import Machines

/// A VM's entry in the machine registry: the `MachineRecord` every machine has, plus how its
/// image is protected, in the same flat JSON object and under the same key as a container's
/// (`ContainerRecord.verity`), so `machines --json` shows both alike.
public struct VMRecord: RegistryEntry, Equatable {
    public var machine: MachineRecord
    /// nil for an image without verity (or a qcow2, whose partitions imagectl cannot read).
    public var verity: [VerityTrust]? = nil

    public init(machine: MachineRecord) { self.machine = machine }

    private enum CodingKeys: String, CodingKey { case verity }

    public init(from decoder: any Decoder) throws {
        machine = try MachineRecord(from: decoder)
        verity = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent([VerityTrust].self, forKey: .verity)
    }

    public func encode(to encoder: any Encoder) throws {
        try machine.encode(to: encoder)
        var fields = encoder.container(keyedBy: CodingKeys.self)
        try fields.encodeIfPresent(verity, forKey: .verity)
    }
}
