import Foundation
import Testing
import TestSupport
@testable import Machines

/// The machine registry as `imagectl run` and `imagectl vm` use it, in a scratch directory.
@Suite("Machine registry")
struct MachineRegistryTests {
    static func record(_ name: String, leader: Int32 = 4242) -> MachineRecord {
        MachineRecord(name: name, kind: .container, leader: leader, supervisor: getpid(), root: "/srv/\(name)",
                      uuid: UUID(), started: Date(timeIntervalSince1970: 1_800_000_000), stopSignal: SIGKILL)
    }

    @Test func registerListLookupUnregister() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let registry = MachineRegistry(directory: scratch.appending("machines"))
        #expect(registry.list().isEmpty)
        let b = try registry.register(Self.record("bravo"))
        let a = try registry.register(Self.record("alpha", leader: 7))
        #expect(registry.list().map(\.name) == ["alpha", "bravo"])
        #expect(registry.lookup("alpha") == Self.record("alpha", leader: 7).with(uuid: a.record.uuid))
        #expect(registry.lookup("charlie") == nil)
        a.unregister()
        a.unregister()
        #expect(registry.list().map(\.name) == ["bravo"])
        #expect(!FileManager.default.fileExists(atPath: scratch.appending("machines/alpha")))
        _ = b
    }

    @Test func secondRegistrationOfALiveNameIsBusy() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let registry = MachineRegistry(directory: scratch.appending("machines"))
        let first = try registry.register(Self.record("web"))
        #expect(throws: MachineError.alreadyRunning("web")) { try registry.register(Self.record("web")) }
        // The refused attempt left the live entry alone.
        #expect(registry.lookup("web")?.root == "/srv/web")
        first.unregister()
        let again = try registry.register(Self.record("web", leader: 99))
        #expect(registry.lookup("web")?.leader == 99)
        again.unregister()
    }

    @Test func droppingTheRegistrationRemovesTheEntry() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let registry = MachineRegistry(directory: scratch.appending("machines"))
        do {
            let registration = try registry.register(Self.record("short"))
            #expect(registry.list().count == 1)
            _ = registration
        }
        #expect(registry.list().isEmpty)
    }

    @Test func entryOfADeadSupervisorIsStale() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let directory = scratch.appending("machines")
        let registry = MachineRegistry(directory: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/ghost"
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        try encoder.encode(Self.record("ghost")).write(to: URL(fileURLWithPath: path))
        // Another process holds the lock: the entry is live.
        let holder = try LockHolder(path: path)
        #expect(registry.list().map(\.name) == ["ghost"])
        #expect(throws: MachineError.alreadyRunning("ghost")) { try registry.register(Self.record("ghost")) }
        // It dies as by kill -9: the entry is dropped and the file removed by the next reader.
        holder.stop()
        #expect(registry.lookup("ghost") == nil)
        #expect(!FileManager.default.fileExists(atPath: path))
        // A stale file is also simply replaced by a new registration.
        try encoder.encode(Self.record("ghost")).write(to: URL(fileURLWithPath: path))
        let registration = try registry.register(Self.record("ghost", leader: 5))
        #expect(registry.lookup("ghost")?.leader == 5)
        registration.unregister()
    }

    @Test func invalidNamesAreRefusedAndIgnored() throws {
        let scratch = try TemporaryDirectory(prefix: "registry")
        let registry = MachineRegistry(directory: scratch.appending("machines"))
        #expect(throws: MachineError.invalidMachineName("../etc")) { try registry.register(Self.record("../etc")) }
        #expect(registry.lookup("../etc") == nil)
        #expect(throws: MachineError.noSuchMachine("nothing")) { try MachineControl(registry: registry).poweroff("nothing") }
    }

    @Test func defaultDirectoryFollowsTheRuntimeDirectory() {
        let explicit = ProcessInfo.processInfo.environment["IMAGECTL_RUNTIME_DIR"]
        #expect(MachineRegistry.defaultDirectory == (explicit.map { $0 + "/machines" } ?? "/run/imagectl/machines"))
    }
}

extension MachineRecord {
    func with(uuid: UUID?) -> MachineRecord {
        var copy = self
        copy.uuid = uuid
        return copy
    }
}
