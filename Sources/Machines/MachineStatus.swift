import Foundation
import LinuxSystem
import SystemPackage

/// What `imagectl status NAME` shows (machinectl status): the record's facts and, for a
/// container, the OS named by its os-release, read through /proc/LEADER/root (the container's
/// own root, whatever was mounted where).
public struct MachineStatus: Encodable, Sendable {
    public var name: String
    /// "container" or "vm" (machinectl's Class).
    public var `class`: String
    /// Always "running": a machine that is not running has no entry.
    public var state = "running"
    public var leader: Int32
    public var supervisor: Int32
    /// The directory or image it runs from.
    public var root: String?
    public var uuid: UUID?
    public var since: Date
    /// PRETTY_NAME of the container's os-release (else NAME); nil for a VM or when unreadable.
    public var os: String?
    /// The container's init as imagectl classified it (decides its signals).
    public var initSystem: InitSystem?
    public var poweroffSignal: String?
    public var rebootSignal: String?
    /// The machine's addresses on its network links (as `imagectl machines` shows them).
    public var addresses: [String]?

    public init(_ record: MachineRecord) {
        name = record.name
        `class` = record.kind.rawValue
        leader = record.leader
        supervisor = record.supervisor
        root = record.root
        uuid = record.uuid
        since = record.started
        initSystem = record.initSystem
        addresses = record.addresses
        if record.kind == .container {
            poweroffSignal = Signals.name(record.stopSignal)
            rebootSignal = record.rebootSignal.map(Signals.name)
            os = Self.operatingSystem(leader: record.leader)
        }
    }

    /// The OS of the tree the leader runs in: /etc/os-release, else /usr/lib/os-release, both
    /// read beneath /proc/LEADER/root so that a symlink in the container cannot point out.
    static func operatingSystem(leader: Int32) -> String? {
        guard let root = try? FileDescriptor.open("/proc/\(leader)/root", .readOnly, options: [.directory, .closeOnExec]) else { return nil }
        defer { try? root.close() }
        for path in ["/etc/os-release", "/usr/lib/os-release"] {
            if let bytes = try? OpenBeneath.readFile(path, in: root, limit: 1 << 16) {
                return prettyName(osRelease: String(decoding: bytes, as: UTF8.self))
            }
        }
        return nil
    }

    /// PRETTY_NAME (or NAME) of an os-release file (os-release(5): shell-style assignments,
    /// values maybe quoted).
    static func prettyName(osRelease text: String) -> String? {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), let eq = trimmed.firstIndex(of: "=") else { continue }
            var value = String(trimmed[trimmed.index(after: eq)...])
            if value.count >= 2, let first = value.first, (first == "\"" || first == "'"), value.last == first {
                value = String(value.dropFirst().dropLast())
                if first == "\"" {
                    value = value.replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\\\", with: "\\")
                }
            }
            fields[String(trimmed[..<eq])] = value
        }
        return fields["PRETTY_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? fields["NAME"]
    }
}
