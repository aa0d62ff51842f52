import Foundation
import LinuxSystem

/// --settings=: whether and how a .nspawn file is used (systemd-nspawn(1)).
public enum SettingsMode: String, Sendable, CaseIterable {
    /// Look for the file; command-line options win over it; trust follows where it was found.
    case yes
    /// Ignore settings files.
    case no
    /// Like yes, but the file is trusted wherever it was found.
    case trusted
    /// Like yes, but the file's settings win over the command line's.
    case override

    /// "yes", "no", "trusted", "override" or a boolean.
    public static func parse(_ text: String) throws(RunnerError) -> SettingsMode {
        if let mode = SettingsMode(rawValue: text) { return mode }
        guard let flag = try? ContainerConfiguration.parseBoolean(text, option: "--settings") else {
            throw .invalidOption(option: "--settings", value: text)
        }
        return flag ? .yes : .no
    }
}

/// Finds the .nspawn file of a machine, with systemd.nspawn(5)'s search order and trust:
///
/// 1. `/etc/systemd/nspawn/NAME.nspawn`, then `/run/systemd/nspawn/NAME.nspawn`: written by the
///    administrator, trusted; every setting takes effect.
/// 2. Otherwise `NAME.nspawn` in the directory that holds the image file or the container's root
///    directory (for a store image: beside it in the pool, where `pull` puts it): shipped with
///    the image, untrusted unless `--settings=trusted`. An untrusted file cannot grant anything:
///    Capability=, MachineID=, Ephemeral=, Bind=/BindReadOnly=/TemporaryFileSystem=/Overlay*=,
///    every [Network] setting, PrivateUsers*=, a SystemCallFilter= that allows calls, Limit*=,
///    OOMScoreAdjust= and CPUAffinity= are ignored with a warning (nspawn.c's merge_settings()).
///
/// NAME is the machine name (-M, or the directory's or image's name without ".raw").
public enum SettingsLookup {
    /// The administrator's directories, searched first; their files are trusted.
    public static let trustedDirectories = ["/etc/systemd/nspawn", "/run/systemd/nspawn"]

    public struct Found: Sendable, Equatable {
        public var path: String
        public var trusted: Bool
    }

    /// The settings file for `machine`, or nil. `beside` is the image file or root directory the
    /// file may sit next to (nil, or "/", for none).
    public static func find(machine: String, beside: String?, mode: SettingsMode,
                            directories: [String] = trustedDirectories) -> Found? {
        guard mode != .no else { return nil }
        let name = machine + ".nspawn"
        for directory in directories {
            let path = directory + "/" + name
            if present(path) { return Found(path: path, trusted: true) }
        }
        guard let beside, !beside.isEmpty else { return nil }
        let standardized = URL(fileURLWithPath: beside).standardizedFileURL.path
        guard standardized != "/" else { return nil }
        let path = FileSystem.parentDirectory(standardized) + "/" + name
        return present(path) ? Found(path: path.hasPrefix("//") ? String(path.dropFirst()) : path, trusted: mode == .trusted) : nil
    }

    /// Whether a file is there (a dangling symlink is not, as for nspawn's fopen()).
    static func present(_ path: String) -> Bool {
        (try? FileStatus.stat(path)) != nil
    }

    /// Reads and parses a found file (at most 1 MiB).
    public static func load(_ path: String) throws(NspawnSettings.Error) -> NspawnSettings {
        // A FIFO or device under that name would block or stream forever: only regular files,
        // checked on the opened descriptor (readRegularFile), one byte past the limit so that the
        // parser reports an oversized file.
        let bytes: [UInt8]
        do {
            bytes = try readRegularFile(path, upTo: NspawnSettings.maximumSize + 1)
        } catch {
            throw .unreadable(path: path, reason: error.errno == .invalidArgument ? "not a regular file" : error.errno.description)
        }
        return try NspawnSettings.parse(bytes, path: path)
    }
}
