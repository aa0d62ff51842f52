import Foundation
import LinuxSystem
import Synchronization

/// A machine's entry in the registry, held by the running imagectl for the machine's life;
/// `unregister()` (or dropping the value) removes the entry. The entry file carries an exclusive
/// OFD lock while registered, so an entry whose supervisor died (even by kill -9) has no lock and
/// is recognised as stale by the next list, lookup or register.
public final class MachineRegistration: Sendable {
    public let record: MachineRecord
    private let lock: FileLock
    private let done = Mutex(false)

    init(record: MachineRecord, lock: FileLock) {
        self.record = record
        self.lock = lock
    }

    deinit { unregister() }

    /// Removes the entry (unlink while the lock is still held, then close). Idempotent.
    public func unregister() {
        let wasDone = done.withLock { value in
            defer { value = true }
            return value
        }
        if !wasDone { lock.releaseRemovingFile() }
    }
}

/// The directory of running machines: one JSON file per machine, named after it, locked by its
/// supervisor. Takes the place of systemd-machined (no D-Bus on the hosts imagectl targets).
public struct MachineRegistry: Sendable {
    /// `$IMAGECTL_RUNTIME_DIR/machines`, default `/run/imagectl/machines`.
    public static var defaultDirectory: String {
        RuntimeDirectory.path + "/machines"
    }

    public let directory: String

    public init(directory: String = MachineRegistry.defaultDirectory) {
        self.directory = directory
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .secondsSince1970
        return encoder
    }()

    private static func decode<Entry: RegistryEntry>(_ bytes: [UInt8], as type: Entry.Type) -> Entry? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(type, from: Data(bytes))
    }

    /// Registers a running machine. Throws `MachineError.alreadyRunning` (a busy error, exit 16)
    /// when a live machine has that name; a stale entry of the same name is replaced.
    public func register(_ entry: some RegistryEntry) throws(MachineError) -> MachineRegistration {
        let record = entry.machine
        guard MachineRecord.isValidName(record.name) else { throw .invalidMachineName(record.name) }
        do {
            try FileSystem.makeDirectories(directory, mode: 0o755)
        } catch {
            throw .registry("cannot create \(directory): \(error)")
        }
        let path = directory + "/" + record.name
        let bytes: [UInt8]
        do {
            bytes = Array(try Self.encoder.encode(entry)) + [0x0a]
        } catch {
            throw .registry("cannot encode the record of \(record.name)")
        }
        // A `list` that is removing a stale entry of this name holds its lock for a moment: try
        // again briefly before calling the name busy.
        var lock: FileLock?
        for attempt in 0..<5 {
            do {
                lock = try FileLock.tryLock(path: path, kind: .exclusive, create: true, mode: 0o644)
            } catch {
                throw .registry("cannot lock \(path): \(error)")
            }
            if lock != nil { break }
            if attempt < 4 { usleep(10_000) }
        }
        guard let lock else { throw .alreadyRunning(record.name) }
        do {
            _ = try lock.descriptor.resize(to: 0)
            _ = try lock.descriptor.writeAll(toAbsoluteOffset: 0, bytes)
        } catch {
            lock.releaseRemovingFile()
            throw .registry("cannot write \(path): \(error)")
        }
        return MachineRegistration(record: record, lock: lock)
    }

    /// The live machines, sorted by name; stale entries are removed on the way (when the caller
    /// may write the directory).
    public func list() -> [MachineRecord] {
        list(as: MachineRecord.self)
    }

    /// The live machines as a runner's own entries (a VM's entry read as a container's has
    /// none of the container's fields).
    public func list<Entry: RegistryEntry>(as type: Entry.Type) -> [Entry] {
        guard let names = try? FileSystem.entries(directory) else { return [] }
        return names.sorted().compactMap { name in
            guard MachineRecord.isValidName(name) else { return nil }
            return entry(name, as: type)
        }
    }

    /// The live machine of that name, if any.
    public func lookup(_ name: String) -> MachineRecord? {
        lookup(name, as: MachineRecord.self)
    }

    /// The live machine of that name as a runner's own entry, if any.
    public func lookup<Entry: RegistryEntry>(_ name: String, as type: Entry.Type) -> Entry? {
        guard MachineRecord.isValidName(name) else { return nil }
        return entry(name, as: type)
    }

    private func entry<Entry: RegistryEntry>(_ name: String, as type: Entry.Type) -> Entry? {
        let path = directory + "/" + name
        guard let locked = try? FileLock.isLocked(path: path, against: .shared) else { return nil }
        guard locked else {
            // No supervisor holds it: stale. Removing it takes its lock first, so a machine that
            // registers this name at the same moment keeps its own (new) file.
            if let stale = try? FileLock.tryLock(path: path, kind: .exclusive, create: false) {
                stale.releaseRemovingFile()
            }
            return nil
        }
        // A record being written right now may not parse yet; it is listed next time.
        guard let bytes = try? FileSystem.readFile(path, limit: 1 << 16), let entry = Self.decode(bytes, as: type),
              entry.machine.name == name else { return nil }
        return entry
    }
}
