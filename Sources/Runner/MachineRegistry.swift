import CShims
import Dissect
import Foundation
import Glibc
import LinuxSystem
import Synchronization
import SystemPackage

/// One running machine (a container of `imagectl run` or a VM of `imagectl vm`), as its
/// supervisor registered it.
public struct MachineRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case container, vm }
    /// Machine name, unique among running machines.
    public var name: String
    public var kind: Kind
    /// Host PID of the container's PID 1, or of the qemu process.
    public var leader: Int32
    /// PID of the imagectl process that runs the machine.
    public var supervisor: Int32
    /// Directory or image path shown by `imagectl machines`.
    public var root: String?
    public var uuid: UUID?
    public var started: Date
    /// What `imagectl stop` sends to `leader`: for a container SIGRTMIN+4 when booted (systemd's
    /// poweroff request), else the kill signal; for a vm SIGTERM to qemu.
    public var stopSignal: Int32
    /// A container's --system-call-filter= values, for `imagectl shell` to build the same filter;
    /// nil for a VM and in records of an imagectl that did not keep them (read as "none").
    public var systemCallFilter: SystemCallFilterSettings? = nil
    /// --private-users=: the container's ID range on the host and how its tree fits it;
    /// nil without a user namespace.
    public var userNamespace: ResolvedUserNamespace? = nil
    /// How a disk image's root and usr are protected (signed-and-trusted, verity-only,
    /// unprotected, with the signer); nil for a directory tree and a VM.
    public var verity: [VerityTrust]? = nil

    public init(name: String, kind: Kind, leader: Int32, supervisor: Int32, root: String?, uuid: UUID?,
                started: Date, stopSignal: Int32) {
        self.name = name
        self.kind = kind
        self.leader = leader
        self.supervisor = supervisor
        self.root = root
        self.uuid = uuid
        self.started = started
        self.stopSignal = stopSignal
    }
}

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

    private static func decode(_ bytes: [UInt8]) -> MachineRecord? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return try? decoder.decode(MachineRecord.self, from: Data(bytes))
    }

    /// Registers a running machine. Throws `RunnerError.alreadyRunning` (a busy error, exit 16)
    /// when a live machine has that name; a stale entry of the same name is replaced.
    public func register(_ record: MachineRecord) throws(RunnerError) -> MachineRegistration {
        guard ContainerConfiguration.isValidMachineName(record.name) else { throw .invalidMachineName(record.name) }
        do {
            try FileSystem.makeDirectories(directory, mode: 0o755)
        } catch {
            throw .registry("cannot create \(directory): \(error)")
        }
        let path = directory + "/" + record.name
        let bytes: [UInt8]
        do {
            bytes = Array(try Self.encoder.encode(record)) + [0x0a]
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
        guard let names = try? FileSystem.entries(directory) else { return [] }
        return names.sorted().compactMap { name in
            guard ContainerConfiguration.isValidMachineName(name) else { return nil }
            return entry(name)
        }
    }

    /// The live machine of that name, if any.
    public func lookup(_ name: String) -> MachineRecord? {
        guard ContainerConfiguration.isValidMachineName(name) else { return nil }
        return entry(name)
    }

    private func entry(_ name: String) -> MachineRecord? {
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
        guard let bytes = try? FileSystem.readFile(path, limit: 1 << 16), let record = Self.decode(bytes),
              record.name == name else { return nil }
        return record
    }
}

extension MachineRegistry {
    /// Sends the machine's stop signal to its leader (pidfd_open(2) + pidfd_send_signal(2)). The
    /// entry is looked up again after the pidfd is open, so a leader PID recycled after the
    /// machine ended is never signalled. Returns the record signalled.
    @discardableResult
    public func stop(_ name: String) throws(RunnerError) -> MachineRecord {
        guard ContainerConfiguration.isValidMachineName(name) else { throw .invalidMachineName(name) }
        guard let record = lookup(name) else { throw .noSuchMachine(name) }
        let pidfd = img_pidfd_open(record.leader, 0)
        guard pidfd >= 0 else {
            let code = img_errno()
            if code == ESRCH { throw .noSuchMachine(name) }
            throw .registry("cannot open the leader \(record.leader) of \(name): \(RunnerError.errnoText(code))")
        }
        defer { Glibc.close(pidfd) }
        guard let again = lookup(name), again.leader == record.leader, again.supervisor == record.supervisor else {
            throw .noSuchMachine(name)
        }
        if img_pidfd_send_signal(pidfd, record.stopSignal) != 0 {
            let code = img_errno()
            if code == ESRCH { throw .noSuchMachine(name) }
            throw .registry("cannot send \(Signals.name(record.stopSignal)) to \(name) (pid \(record.leader)): \(RunnerError.errnoText(code))")
        }
        return record
    }
}
