import Foundation
import LinuxSystem

/// --resolv-conf=: how the container's /etc/resolv.conf is provided (systemd-nspawn(1)).
public enum ResolvConfMode: String, CaseIterable, Sendable {
    case off
    case copyHost = "copy-host", copyStatic = "copy-static", copyUplink = "copy-uplink", copyStub = "copy-stub"
    case replaceHost = "replace-host", replaceStatic = "replace-static", replaceUplink = "replace-uplink", replaceStub = "replace-stub"
    case bindHost = "bind-host", bindStatic = "bind-static", bindUplink = "bind-uplink", bindStub = "bind-stub"
    case delete
    case auto

    public static func parse(_ text: String) throws(EtcFileError) -> ResolvConfMode {
        guard let mode = ResolvConfMode(rawValue: text) else { throw .invalidMode(option: "--resolv-conf", value: text) }
        return mode
    }
}

/// --timezone=: how the container's /etc/localtime is provided (systemd-nspawn(1)).
public enum TimezoneMode: String, CaseIterable, Sendable {
    case off, copy, bind, symlink, delete, auto

    public static func parse(_ text: String) throws(EtcFileError) -> TimezoneMode {
        guard let mode = TimezoneMode(rawValue: text) else { throw .invalidMode(option: "--timezone", value: text) }
        return mode
    }
}

public enum EtcFileError: Swift.Error, CustomStringConvertible, Equatable {
    case invalidMode(option: String, value: String)

    public var description: String {
        switch self {
        case .invalidMode(let option, let value):
            let modes = option == "--timezone" ? TimezoneMode.allCases.map(\.rawValue) : ResolvConfMode.allCases.map(\.rawValue)
            return "invalid \(option) mode '\(value)' (expected one of: \(modes.joined(separator: ", ")))"
        }
    }
}

/// What the container child does for one file in /etc (`struct img_etc_file`): the steps it tries
/// in order (symlink, bind, copy) or a delete, with everything it needs read from the host here.
struct EtcFilePlan: Equatable {
    struct Steps: OptionSet, Equatable {
        let rawValue: Int32
        static let symlink = Steps(rawValue: 1)
        static let bind = Steps(rawValue: 2)
        static let copy = Steps(rawValue: 4)
        static let delete = Steps(rawValue: 8)
    }
    var steps: Steps = []
    /// A copy replaces a symlink too (replace-*, and timezone copies, which nspawn makes with
    /// COPY_REPLACE).
    var replace = false
    var hostPath = ""
    var contents: [UInt8] = []
    var linkTarget = ""
    var linkCheck = ""
}

/// Turns --resolv-conf= and --timezone= into what the child does, with nspawn's rules:
///
/// - resolv-conf `auto`: off with --private-network; otherwise systemd-resolved's static file
///   (/usr/lib/systemd/resolv.conf) when resolved runs on the host, else the host's
///   /etc/resolv.conf; copied when the tree is writable, bind-mounted when it is read-only
///   (--read-only or --volatile=state). The seed manual's "copy-static (read-only)" for the last
///   case contradicts systemd's own page and code (bind-host); imagectl binds.
/// - A source that does not exist on the host (the -uplink and -stub files without
///   systemd-resolved, which this kind of host does not run) is skipped with a warning: the
///   container's file is left as it is. nspawn also only warns and goes on (its bind modes first
///   touch an empty target file; imagectl does not leave that behind).
/// - bind falls back to a copy when the mount cannot be made (nspawn does the same); copy-* does
///   not replace a symlink in the image, replace-* does; delete unlinks.
/// - timezone `auto`: host /etc/localtime a symlink -> symlink (bind on a read-only tree); a
///   regular file -> copy (bind when read-only); missing -> delete (off when read-only).
///   symlink falls back to bind when the image lacks the host's zone file, bind to copy.
enum EtcFiles {
    static let hostResolvConf = "/etc/resolv.conf"
    static let staticResolvConf = "/usr/lib/systemd/resolv.conf"
    static let uplinkResolvConf = "/run/systemd/resolve/resolv.conf"
    static let stubResolvConf = "/run/systemd/resolve/stub-resolv.conf"
    static let hostLocaltime = "/etc/localtime"
    /// Larger files are not configuration files; refused rather than copied.
    static let maximumSize = 1 << 20

    /// resolved writes its stub file while it runs (nspawn asks its socket; no D-Bus here).
    static var resolvedRuns: Bool { FileManager.default.fileExists(atPath: stubResolvConf) }

    static func resolvConfPlan(_ mode: ResolvConfMode, privateNetwork: Bool, writable: Bool, warn: (String) -> Void) -> EtcFilePlan {
        var mode = mode
        if mode == .auto {
            if privateNetwork { return EtcFilePlan() }
            if resolvedRuns && FileManager.default.fileExists(atPath: staticResolvConf) {
                mode = writable ? .copyStatic : .bindStatic
            } else {
                mode = writable ? .copyHost : .bindHost
            }
        }
        let source: String
        var plan = EtcFilePlan()
        switch mode {
        case .off, .auto: return plan
        case .delete: plan.steps = .delete; return plan
        case .copyHost, .replaceHost, .bindHost: source = hostResolvConf
        case .copyStatic, .replaceStatic, .bindStatic: source = staticResolvConf
        case .copyUplink, .replaceUplink, .bindUplink: source = uplinkResolvConf
        case .copyStub, .replaceStub, .bindStub: source = stubResolvConf
        }
        switch mode {
        case .bindHost, .bindStatic, .bindUplink, .bindStub: plan.steps = [.bind, .copy]
        case .replaceHost, .replaceStatic, .replaceUplink, .replaceStub: plan.steps = .copy; plan.replace = true
        default: plan.steps = .copy
        }
        guard let contents = read(source) else {
            warn("--resolv-conf=\(mode.rawValue): \(source) does not exist or cannot be read on the host"
                 + (source.hasPrefix("/run/systemd/resolve/") ? " (systemd-resolved is not running)" : "")
                 + "; the container's /etc/resolv.conf is left as it is.")
            return EtcFilePlan()
        }
        plan.hostPath = source
        plan.contents = contents
        return plan
    }

    static func timezonePlan(_ mode: TimezoneMode, writable: Bool, warn: (String) -> Void) -> EtcFilePlan {
        let manager = FileManager.default
        let link = try? manager.destinationOfSymbolicLink(atPath: hostLocaltime)
        let exists = manager.fileExists(atPath: hostLocaltime)
        var mode = mode
        if mode == .auto {
            if link != nil { mode = writable ? .symlink : .bind }
            else if exists { mode = writable ? .copy : .bind }
            else { mode = writable ? .delete : .off }
        }
        var plan = EtcFilePlan()
        switch mode {
        case .off, .auto: return plan
        case .delete: plan.steps = .delete; return plan
        case .symlink:
            plan.steps = [.bind, .copy]
            if let zone = link.flatMap(zoneName) {
                plan.steps.insert(.symlink)
                plan.linkTarget = "../usr/share/zoneinfo/" + zone
                plan.linkCheck = "usr/share/zoneinfo/" + zone
            }
        case .bind: plan.steps = [.bind, .copy]
        case .copy: plan.steps = .copy
        }
        plan.replace = true
        guard let contents = read(hostLocaltime) else {
            warn("--timezone=\(mode.rawValue): \(hostLocaltime) does not exist or cannot be read on the host; the container's /etc/localtime is left as it is.")
            return EtcFilePlan()
        }
        plan.hostPath = hostLocaltime
        plan.contents = contents
        return plan
    }

    /// "Europe/Berlin" from a link to /usr/share/zoneinfo/Europe/Berlin or
    /// ../usr/share/zoneinfo/Europe/Berlin; nil for a link anywhere else or with ".." in the zone.
    static func zoneName(_ link: String) -> String? {
        for prefix in ["/usr/share/zoneinfo/", "../usr/share/zoneinfo/"] where link.hasPrefix(prefix) {
            let zone = String(link.dropFirst(prefix.count))
            let parts = zone.split(separator: "/", omittingEmptySubsequences: false)
            guard !zone.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else { return nil }
            return zone
        }
        return nil
    }

    private static func read(_ path: String) -> [UInt8]? {
        // readRegularFile: a FIFO or device at the path is skipped instead of blocking the start.
        guard let data = try? readRegularFile(path, upTo: maximumSize + 1), data.count <= maximumSize else { return nil }
        return data
    }
}
