import Foundation
import Machines
import Testing
import TestSupport
@testable import Runner

/// A container's registry entry: the common machine record and the container's own fields in
/// one JSON object, read back whole by the container runner and in part by anything else.
@Suite("Container records")
struct ContainerRecordTests {
    @Test func containerFieldsRideAlongWithTheMachineRecord() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let containers = ContainerRegistry(directory: scratch.appending("machines"))
        var record = ContainerRecord(name: "web", kind: .container, leader: 42, supervisor: getpid(), root: "/srv/web",
                                     uuid: UUID(), started: Date(timeIntervalSince1970: 1_800_000_000), stopSignal: SIGKILL)
        var filter = SystemCallFilterSettings()
        try filter.add("~@clock")
        record.systemCallFilter = filter
        let registration = try containers.register(record)
        defer { registration.unregister() }
        #expect(registration.record == record.machine)
        #expect(containers.lookup("web") == record)
        #expect(containers.list() == [record])
        // The plain view (machines, stop) reads the same file.
        #expect(containers.machines.lookup("web") == record.machine)
        #expect(containers.lookup("web")?.leader == 42)
        // A second container of that name is busy.
        #expect(throws: MachineError.alreadyRunning("web")) { try containers.register(record) }
    }

    @Test func aVMEntryReadsAsARecordWithoutContainerFields() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let containers = ContainerRegistry(directory: scratch.appending("machines"))
        let vm = MachineRecord(name: "vm1", kind: .vm, leader: 43, supervisor: getpid(), root: "/srv/vm1.raw",
                               uuid: nil, started: Date(timeIntervalSince1970: 1_800_000_000), stopSignal: SIGTERM)
        let registration = try containers.machines.register(vm)
        defer { registration.unregister() }
        #expect(containers.lookup("vm1") == ContainerRecord(machine: vm))
    }
}
