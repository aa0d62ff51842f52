import Dissect
import Foundation
import Machines

/// A container's entry in the machine registry: the `MachineRecord` every machine has, plus what
/// `imagectl shell` needs to enter the container the same way it was started and what
/// `imagectl machines --json` shows about its root. Stored as one flat JSON object, so a VM's
/// entry reads as a container record without these fields, and a record of an imagectl that did
/// not keep them reads as "none". The common fields read through (`record.leader`).
@dynamicMemberLookup
public struct ContainerRecord: RegistryEntry, Equatable {
    public var machine: MachineRecord
    /// The container's --system-call-filter= values, for `imagectl shell` to build the same
    /// filter; nil for a VM and in records of an imagectl that did not keep them.
    public var systemCallFilter: SystemCallFilterSettings? = nil
    /// --private-users=: the container's ID range on the host and how its tree fits it;
    /// nil without a user namespace.
    public var userNamespace: ResolvedUserNamespace? = nil
    /// How a disk image's root and usr are protected (signed-and-trusted, verity-only,
    /// unprotected, with the signer); nil for a directory tree and a VM.
    public var verity: [VerityTrust]? = nil

    public init(machine: MachineRecord) { self.machine = machine }

    /// `MachineRecord`'s initialiser, for a record that gets the container fields next.
    public init(name: String, kind: MachineRecord.Kind, leader: Int32, supervisor: Int32, root: String?, uuid: UUID?,
                started: Date, stopSignal: Int32) {
        machine = MachineRecord(name: name, kind: kind, leader: leader, supervisor: supervisor, root: root, uuid: uuid,
                                started: started, stopSignal: stopSignal)
    }

    public subscript<Value>(dynamicMember field: WritableKeyPath<MachineRecord, Value>) -> Value {
        get { machine[keyPath: field] }
        set { machine[keyPath: field] = newValue }
    }

    private enum CodingKeys: String, CodingKey { case systemCallFilter, userNamespace, verity }

    public init(from decoder: any Decoder) throws {
        machine = try MachineRecord(from: decoder)
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        systemCallFilter = try fields.decodeIfPresent(SystemCallFilterSettings.self, forKey: .systemCallFilter)
        userNamespace = try fields.decodeIfPresent(ResolvedUserNamespace.self, forKey: .userNamespace)
        verity = try fields.decodeIfPresent([VerityTrust].self, forKey: .verity)
    }

    public func encode(to encoder: any Encoder) throws {
        try machine.encode(to: encoder)
        var fields = encoder.container(keyedBy: CodingKeys.self)
        try fields.encodeIfPresent(systemCallFilter, forKey: .systemCallFilter)
        try fields.encodeIfPresent(userNamespace, forKey: .userNamespace)
        try fields.encodeIfPresent(verity, forKey: .verity)
    }
}

/// The machine registry as the container runner uses it: its entries are `ContainerRecord`s.
public struct ContainerRegistry: Sendable {
    public let machines: MachineRegistry

    public init(directory: String = MachineRegistry.defaultDirectory) {
        machines = MachineRegistry(directory: directory)
    }

    public func register(_ record: ContainerRecord) throws(MachineError) -> MachineRegistration {
        try machines.register(record)
    }

    /// The live machine of that name (a VM too: its kind says so), if any.
    public func lookup(_ name: String) -> ContainerRecord? {
        machines.lookup(name, as: ContainerRecord.self)
    }

    /// The live machines, with the container fields where they are containers.
    public func list() -> [ContainerRecord] {
        machines.list(as: ContainerRecord.self)
    }
}
