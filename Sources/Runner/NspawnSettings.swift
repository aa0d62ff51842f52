import Foundation
import Machines
import Network

/// A parsed `.nspawn` settings file (systemd.nspawn(5)): the [Exec], [Files] and [Network]
/// settings imagectl's runner has, as values. `parse` only reads text; `SettingsLookup` finds the
/// file and decides whether it is trusted; `apply(to:mask:trusted:path:)` merges it into a
/// configuration with nspawn's precedence and trust rules.
///
/// Syntax (systemd.syntax(7), as systemd's conf-parser reads it):
///
///     # comment            ; comment
///     [Exec]                              <- section header
///     Key=value                           <- key and value are stripped of blanks
///     Parameters=a "b c" \                <- a trailing backslash joins the next line (with a
///        d                                   space); comment lines inside the join are skipped
///
/// Written by hand because no library here reads systemd's ini dialect; it is small and bounded
/// (1 MiB, like nspawn's line limit) and never traps on any bytes (it is a fuzz target).
public struct NspawnSettings: Sendable, Equatable {
    /// Boot= / ProcessTwo=: how the payload starts (nspawn's start mode).
    public enum StartMode: Sendable, Equatable { case pid1, pid2, boot }

    /// A value with the line it came from (kept for the settings other code validates).
    public struct Located: Sendable, Equatable {
        public var text: String
        public var line: Int
    }

    // [Exec]
    public var startMode: StartMode?
    /// Parameters=; nil: not set. Takes effect only together with Boot= or ProcessTwo=, as in nspawn.
    public var parameters: [String]?
    public var environment: [String]?
    public var user: String?
    public var workingDirectory: String?
    public var capability: Set<Capability> = []
    public var dropCapability: Set<Capability> = []
    public var noNewPrivileges: Bool?
    public var killSignal: Int32?
    public var personality: UInt32?
    public var machineID: UUID?
    public var hostname: String?
    /// Limit*=, one per resource (the last assignment wins).
    public var resourceLimits: [ProcessSettings.ResourceLimit] = []
    public var oomScoreAdjust: Int32?
    public var cpuAffinity: [Int]?
    public var resolvConf: ResolvConfMode?
    public var timezone: TimezoneMode?
    public var privateUsers: Located?
    public var notifyReady: Bool?
    /// SystemCallFilter= assignments in order (each one list, "~" first: a deny list).
    public var systemCallFilter: [Located] = []
    public var ephemeral: Bool?
    // [Files]
    public var readOnly: Bool?
    public var volatile: VolatileMode?
    /// Bind=, BindReadOnly=, TemporaryFileSystem=, Overlay=, OverlayReadOnly= in file order.
    public var mounts: [ExtraMount] = []
    /// PrivateUsersOwnership= (or the old PrivateUsersChown=, as "chown"/"off").
    public var privateUsersOwnership: Located?
    // [Network]
    public var privateNetwork: Bool?
    /// VirtualEthernet=, VirtualEthernetExtra=, Interface=, MACVLAN=, IPVLAN=, Bridge=, Zone=
    /// and Port= as one value (the same parsers as the command line's options).
    public var network = NetworkSettings()
    /// Which [Network] link keys appeared (nspawn's settings_network_configured): any of them
    /// counts as "network settings" for the trust rule and implies a private network.
    public var networkKeys: [String] = []
    /// Kept for callers of the earlier parser: [Network] keys imagectl does not implement (none
    /// now).
    public var unsupportedNetwork: [String] = []

    /// Lines the parser ignored, with why (unknown section or key, unsupported setting, invalid
    /// UTF-8), each "PATH:LINE: text".
    public var warnings: [String] = []

    public init() {}

    /// The largest settings file read (nspawn's own line limit is 1 MiB too).
    public static let maximumSize = 1 << 20

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case malformed(path: String, line: Int, reason: String)
        case tooLarge(path: String)
        case unreadable(path: String, reason: String)

        public var description: String {
            switch self {
            case .malformed(let path, let line, let reason): "settings file \(path):\(line): \(reason)"
            case .tooLarge(let path): "settings file \(path) is larger than 1 MiB"
            case .unreadable(let path, let reason): "cannot read settings file \(path): \(reason)"
            }
        }
    }

    /// Keys nspawn knows that imagectl does not implement: ignored with a warning naming them.
    static let unsupportedKeys: [String: Set<String>] = [
        "Exec": ["PivotRoot", "LinkJournal", "SuppressSync", "AmbientCapability"],
        "Files": ["Inaccessible", "BindUser", "BindUserShell"],
    ]

    /// Every key `parse` takes (for `run --help` and tests).
    public static let supportedKeys: [String: [String]] = [
        "Exec": ["Boot", "ProcessTwo", "Parameters", "Environment", "User", "WorkingDirectory", "Capability",
                 "DropCapability", "NoNewPrivileges", "KillSignal", "Personality", "MachineID", "Hostname",
                 "OOMScoreAdjust", "CPUAffinity", "ResolvConf", "Timezone", "PrivateUsers", "NotifyReady",
                 "SystemCallFilter", "Ephemeral"] + ProcessSettings.resourceNames.map { "Limit" + $0 },
        "Files": ["ReadOnly", "Volatile", "Bind", "BindReadOnly", "TemporaryFileSystem", "Overlay", "OverlayReadOnly",
                  "PrivateUsersOwnership", "PrivateUsersChown"],
        "Network": ["Private", "VirtualEthernet", "VirtualEthernetExtra", "Interface", "MACVLAN", "IPVLAN", "Bridge", "Zone", "Port"],
    ]

    // MARK: Parsing

    /// Parses the bytes of a settings file; `path` only names it in messages.
    public static func parse(_ bytes: [UInt8], path: String) throws(Error) -> NspawnSettings {
        guard bytes.count <= maximumSize else { throw .tooLarge(path: path) }
        var settings = NspawnSettings()
        var section: String?
        var sectionKnown = false
        var pending: (text: String, line: Int)?
        var lineNumber = 0
        for raw in splitLines(bytes) {
            lineNumber += 1
            guard !raw.contains(0) else { throw .malformed(path: path, line: lineNumber, reason: "the line contains a NUL byte") }
            guard let decoded = String(validating: raw, as: UTF8.self) else {
                // systemd's conf-parser skips lines that are not UTF-8 with a warning.
                settings.warnings.append("\(path):\(lineNumber): invalid UTF-8, ignoring the line")
                continue
            }
            var text = trimmed(decoded)
            if var joined = pending {
                // Comment lines inside a continuation are dropped, as systemd does.
                if text.hasPrefix("#") || text.hasPrefix(";") { continue }
                joined.text += text
                pending = nil
                text = joined.text
                if text.hasSuffix("\\") {
                    pending = (String(text.dropLast()) + " ", joined.line)
                    continue
                }
                try settings.handle(text, line: joined.line, path: path, section: &section, sectionKnown: &sectionKnown)
                continue
            }
            if text.isEmpty || text.hasPrefix("#") || text.hasPrefix(";") { continue }
            if text.hasSuffix("\\") {
                pending = (String(text.dropLast()) + " ", lineNumber)
                continue
            }
            try settings.handle(text, line: lineNumber, path: path, section: &section, sectionKnown: &sectionKnown)
        }
        if let pending {
            try settings.handle(trimmed(pending.text), line: pending.line, path: path, section: &section, sectionKnown: &sectionKnown)
        }
        return settings
    }

    /// Lines split at "\n" (a "\r" before it is dropped).
    static func splitLines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == 0x0a {
            var end = index
            if end > start, bytes[end - 1] == 0x0d { end -= 1 }
            lines.append(bytes[start..<end])
            start = index + 1
        }
        if start < bytes.endIndex { lines.append(bytes[start..<bytes.endIndex]) }
        return lines
    }

    static func trimmed(_ text: String) -> String {
        let blanks: Set<Character> = [" ", "\t", "\r", "\n", "\u{0B}", "\u{0C}"]
        var s = Substring(text)
        while let c = s.first, blanks.contains(c) { s = s.dropFirst() }
        while let c = s.last, blanks.contains(c) { s = s.dropLast() }
        return String(s)
    }

    private mutating func handle(_ text: String, line: Int, path: String, section: inout String?, sectionKnown: inout Bool) throws(Error) {
        if text.hasPrefix("[") {
            guard text.hasSuffix("]"), text.count >= 2 else {
                throw .malformed(path: path, line: line, reason: "invalid section header \"\(text)\"")
            }
            let name = String(text.dropFirst().dropLast())
            guard !name.isEmpty, !name.contains(where: { $0 == "[" || $0 == "]" }) else {
                throw .malformed(path: path, line: line, reason: "invalid section header \"\(text)\"")
            }
            section = name
            sectionKnown = ["Exec", "Files", "Network"].contains(name)
            // Sections starting with "X-" are for other programs; systemd skips them silently.
            if !sectionKnown && !name.hasPrefix("X-") {
                warnings.append("\(path):\(line): unknown section [\(name)], ignoring")
            }
            return
        }
        guard let eq = text.firstIndex(of: "=") else {
            throw .malformed(path: path, line: line, reason: "missing \"=\" in \"\(text)\"")
        }
        let key = Self.trimmed(String(text[..<eq]))
        let value = Self.trimmed(String(text[text.index(after: eq)...]))
        guard let section else {
            warnings.append("\(path):\(line): assignment outside of a section, ignoring")
            return
        }
        guard sectionKnown else { return }
        if key.hasPrefix("X-") { return }
        do {
            try assign(section: section, key: key, value: value, line: line, path: path)
        } catch let reason {
            throw .malformed(path: path, line: line, reason: "\(key)=\(value): \(reason.text)")
        }
    }

    /// Why one value is wrong (wrapped with the file and line by `handle`).
    struct Reason: Swift.Error { var text: String }

    private mutating func assign(section: String, key: String, value: String, line: Int, path: String) throws(Reason) {
        func boolean() throws(Reason) -> Bool? {
            if value.isEmpty { return nil }
            guard let flag = try? ContainerConfiguration.parseBoolean(value, option: key) else { throw Reason(text: "not a boolean") }
            return flag
        }
        func wrap<T>(_ body: () throws -> T) throws(Reason) -> T {
            do { return try body() } catch { throw Reason(text: "\(error)") }
        }
        if Self.unsupportedKeys[section]?.contains(key) == true {
            if section == "Network" { unsupportedNetwork.append(key) }
            warnings.append("\(path):\(line): ignoring \(key)= (not supported by imagectl)")
            return
        }
        switch (section, key) {
        case ("Exec", "Boot"):
            guard let flag = try boolean() else { return }
            if flag {
                guard startMode != .pid2 else { throw Reason(text: "Boot=yes conflicts with ProcessTwo=yes") }
                startMode = .boot
            } else {
                guard startMode != .boot else { throw Reason(text: "conflicts with Boot=yes") }
                if startMode == nil { startMode = .pid1 }
            }
        case ("Exec", "ProcessTwo"):
            guard let flag = try boolean() else { return }
            if flag {
                guard startMode != .boot else { throw Reason(text: "ProcessTwo=yes conflicts with Boot=yes") }
                startMode = .pid2
            } else {
                guard startMode != .pid2 else { throw Reason(text: "conflicts with ProcessTwo=yes") }
                if startMode == nil { startMode = .pid1 }
            }
        case ("Exec", "Parameters"):
            if value.isEmpty { parameters = nil; return }
            parameters = (parameters ?? []) + (try Self.words(value))
        case ("Exec", "Environment"):
            if value.isEmpty { environment = nil; return }
            let words = try Self.words(value)
            for word in words {
                guard let eq = word.firstIndex(of: "="), eq != word.startIndex else { throw Reason(text: "\"\(word)\" is not NAME=VALUE") }
            }
            environment = (environment ?? []) + words
        case ("Exec", "User"):
            if value.isEmpty { user = nil; return }
            guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else { throw Reason(text: "contains control characters") }
            user = value
        case ("Exec", "WorkingDirectory"):
            if value.isEmpty { workingDirectory = nil; return }
            guard value.hasPrefix("/") else { throw Reason(text: "not an absolute path") }
            workingDirectory = value
        case ("Exec", "Capability"), ("Exec", "DropCapability"):
            var set: Set<Capability> = []
            for word in value.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                if word == "all" { set.formUnion(Capability.all); continue }
                guard let capability = Capability(name: String(word)) else { throw Reason(text: "unknown capability \"\(word)\"") }
                set.insert(capability)
            }
            if key == "Capability" { capability.formUnion(set) } else { dropCapability.formUnion(set) }
        case ("Exec", "NoNewPrivileges"): noNewPrivileges = try boolean()
        case ("Exec", "KillSignal"):
            if value.isEmpty { killSignal = nil; return }
            killSignal = try wrap { try Signals.parse(value) }
        case ("Exec", "Personality"):
            if value.isEmpty { personality = nil; return }
            personality = try wrap { try ProcessSettings.parsePersonality(value) }
        case ("Exec", "MachineID"):
            if value.isEmpty { machineID = nil; return }
            guard let id = Self.parseID128(value) else { throw Reason(text: "not a 128-bit ID") }
            machineID = id
        case ("Exec", "Hostname"):
            if value.isEmpty { hostname = nil; return }
            guard ContainerConfiguration.isValidHostname(value) else { throw Reason(text: "not a valid host name") }
            hostname = value
        case ("Exec", let name) where name.hasPrefix("Limit") && ProcessSettings.resourceNames.contains(String(name.dropFirst(5))):
            let resource = String(name.dropFirst(5))
            let limit = try wrap { try ProcessSettings.parseResourceLimit(resource + "=" + value) }
            resourceLimits.removeAll { $0.resource == limit.resource }
            resourceLimits.append(limit)
        case ("Exec", "OOMScoreAdjust"):
            if value.isEmpty { oomScoreAdjust = nil; return }
            oomScoreAdjust = try wrap { try ProcessSettings.parseOOMScoreAdjust(value) }
        case ("Exec", "CPUAffinity"):
            if value.isEmpty { cpuAffinity = nil; return }
            let cpus = try wrap { try ProcessSettings.parseCPUList(value) }
            cpuAffinity = Array(Set((cpuAffinity ?? []) + cpus)).sorted()
        case ("Exec", "ResolvConf"):
            if value.isEmpty { resolvConf = nil; return }
            resolvConf = try wrap { try ResolvConfMode.parse(value) }
        case ("Exec", "Timezone"):
            if value.isEmpty { timezone = nil; return }
            timezone = try wrap { try TimezoneMode.parse(value) }
        case ("Exec", "PrivateUsers"):
            if value.isEmpty { privateUsers = nil; return }
            try wrap { try Self.checkPrivateUsers(value) }
            privateUsers = Located(text: value, line: line)
        case ("Exec", "NotifyReady"): notifyReady = try boolean()
        case ("Exec", "SystemCallFilter"):
            if value.isEmpty { systemCallFilter = []; return }
            try wrap { try Self.checkSystemCallFilter(value) }
            systemCallFilter.append(Located(text: value, line: line))
        case ("Exec", "Ephemeral"): ephemeral = try boolean()
        case ("Files", "ReadOnly"): readOnly = try boolean()
        case ("Files", "Volatile"):
            if value.isEmpty { volatile = nil; return }
            volatile = try wrap { try VolatileMode.parse(value) }
        case ("Files", "Bind"), ("Files", "BindReadOnly"):
            if value.isEmpty { mounts = []; return }
            mounts.append(try wrap { try ExtraMount.parseBind(value, readOnly: key == "BindReadOnly") })
        case ("Files", "TemporaryFileSystem"):
            if value.isEmpty { mounts = []; return }
            mounts.append(try wrap { try ExtraMount.parseTmpfs(value) })
        case ("Files", "Overlay"), ("Files", "OverlayReadOnly"):
            if value.isEmpty { mounts = []; return }
            mounts.append(try wrap { try ExtraMount.parseOverlay(value, readOnly: key == "OverlayReadOnly") })
        case ("Files", "PrivateUsersOwnership"):
            if value.isEmpty { privateUsersOwnership = nil; return }
            try wrap { try Self.checkPrivateUsersOwnership(value) }
            privateUsersOwnership = Located(text: value, line: line)
        case ("Files", "PrivateUsersChown"):
            // The old name: a boolean, yes meaning chown.
            guard let flag = try boolean() else { privateUsersOwnership = nil; return }
            privateUsersOwnership = Located(text: flag ? "chown" : "off", line: line)
        case ("Network", "Private"): privateNetwork = try boolean()
        case ("Network", "VirtualEthernet"):
            guard let flag = try boolean() else { return }
            network.veth = flag
            networkKeys.append(key)
        case ("Network", "VirtualEthernetExtra"):
            network.vethExtra.append(try wrap { try NetworkOptionParser.vethExtra(value) })
            networkKeys.append(key)
        case ("Network", "Interface"), ("Network", "MACVLAN"), ("Network", "IPVLAN"):
            // A whitespace-separated list, each IF[:NAME], as systemd.nspawn(5) has it.
            let option = ["Interface": "Interface=", "MACVLAN": "MACVLAN=", "IPVLAN": "IPVLAN="][key]!
            let prefix = ["Interface": "", "MACVLAN": "mv-", "IPVLAN": "iv-"][key]!
            let pairs = try wrap { try value.split(whereSeparator: \.isWhitespace).map {
                try NetworkOptionParser.hostInterface(String($0), option: option, prefix: prefix)
            } }
            switch key {
            case "Interface": network.interfaces += pairs
            case "MACVLAN": network.macvlan += pairs
            default: network.ipvlan += pairs
            }
            networkKeys.append(key)
        case ("Network", "Bridge"):
            network.bridge = value.isEmpty ? nil : try wrap { try NetworkOptionParser.bridge(value) }
            networkKeys.append(key)
        case ("Network", "Zone"):
            network.zone = value.isEmpty ? nil : try wrap { try NetworkOptionParser.zone(value) }
            networkKeys.append(key)
        case ("Network", "Port"):
            network.ports.append(try wrap { try NetworkOptionParser.port(value) })
        default:
            warnings.append("\(path):\(line): unknown key \(key)= in section [\(section)], ignoring")
        }
    }

    /// Splits a list value into words as systemd's list settings do: blanks separate words,
    /// single or double quotes group (and are removed), a backslash keeps the next character
    /// from separating or quoting (both are kept).
    static func words(_ text: String) throws(Reason) -> [String] {
        var result: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for ch in text {
            if escaped {
                current.append(ch)
                escaped = false
                continue
            }
            if ch == "\\" {
                current.append(ch)
                escaped = true
                inWord = true
                continue
            }
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
                continue
            }
            if ch == "\"" || ch == "'" {
                quote = ch
                inWord = true
            } else if ch == " " || ch == "\t" || ch == "\n" {
                if inWord { result.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(ch)
                inWord = true
            }
        }
        if quote != nil { throw Reason(text: "unbalanced quotes") }
        if escaped { throw Reason(text: "a trailing backslash") }
        if inWord { result.append(current) }
        return result
    }

    /// 32 hex digits or the dashed UUID form (sd_id128_from_string).
    static func parseID128(_ text: String) -> UUID? {
        if let uuid = UUID(uuidString: text) { return uuid }
        guard text.utf8.count == 32, text.allSatisfy(\.isHexDigit) else { return nil }
        let c = Array(text)
        return UUID(uuidString: String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32]))
    }
}
