import Foundation
import LinuxSystem

/// What a machine's host-side networking made, written before it is made, so that a killed
/// imagectl leaves a record the next run (or `imagectl clean`) undoes. One JSON file per machine
/// under $IMAGECTL_RUNTIME_DIR/network (default /run/imagectl/network), OFD-locked by the
/// imagectl that runs the machine: a record whose lock can be taken is a leftover.
struct MachineNetworkRecord: Codable, Equatable {
    var machine: String
    var supervisor: Int32
    /// Host-side links imagectl created (deleting a veth end removes the pair).
    var createdLinks: [String] = []
    /// The veth's own /28 and dnsmasq (not for bridge or zone members).
    var subnet: Subnet?
    var dnsmasqInterface: String?
    /// The machine's address (veth or zone), as `machines` shows it.
    var address: String?
    var zone: String?
    /// Elements of the shared nftables table (Firewall.swift).
    var firewallElements: [FirewallElement] = []
    var ports: [PortRecord] = []

    struct PortRecord: Codable, Equatable {
        var proto: String
        var hostPort: UInt16
        var containerPort: UInt16
    }
}

/// A zone: its bridge, /28, dnsmasq and members, shared by the machines in it.
struct ZoneRecord: Codable, Equatable {
    var zone: String
    var bridge: String
    var subnet: Subnet
    var members: [DnsmasqConfiguration.Member] = []
}

struct NetworkState {
    let directory: String

    /// `runtimeDirectory`, else $IMAGECTL_RUNTIME_DIR (tests point it at a scratch directory),
    /// else /run/imagectl; the records live in its "network" subdirectory.
    init(runtimeDirectory: String? = nil) {
        let base = runtimeDirectory
            ?? ProcessInfo.processInfo.environment["IMAGECTL_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/run/imagectl"
        directory = base + "/network"
    }

    func recordPath(_ machine: String) -> String { "\(directory)/machine-\(machine).json" }
    func zonePath(_ zone: String) -> String { "\(directory)/zone-\(zone).json" }

    /// 0755: dnsmasq reads its hosts files here after it dropped to its own user.
    func ensureDirectory() throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755]) }
        catch { throw NetworkSetupError.step("create \(directory)", error.localizedDescription) }
    }

    /// The lock that serializes every change of links, pools and zones by imagectl processes.
    /// OFD locks do not wait, so this polls (changes hold it for milliseconds).
    func lockAll() throws -> FileLock {
        try ensureDirectory()
        let path = "\(directory)/lock"
        for _ in 0..<3000 {
            do {
                if let lock = try FileLock.tryLock(path: path, kind: .exclusive) { return lock }
            } catch {
                throw NetworkSetupError.step("lock \(path)", error.description)
            }
            usleep(10_000)
        }
        throw NetworkSetupError.step("lock \(path)", "held by another imagectl for 30 seconds")
    }

    static func write<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do { try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic) }
        catch { throw NetworkSetupError.step("write \(path)", error.localizedDescription) }
    }

    static func read<T: Decodable>(_ type: T.Type, from path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
    }

    func machineRecordPaths() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("machine-") && $0.hasSuffix(".json") }.sorted().map { "\(directory)/\($0)" }
    }
}
