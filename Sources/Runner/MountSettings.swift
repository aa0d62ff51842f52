import Dissect
import Foundation

/// Where the container's root comes from and the extra mounts made inside it (`-i`, `-M` as a
/// source, `--root-hash=`, `--image-policy=`, `--bind=`, `--bind-ro=`, `--tmpfs=`, `--overlay=`,
/// `--overlay-ro=`), as values. `RootSession` turns them into a mounted root and concrete paths.
public struct MountSettings: Sendable {
    /// A disk image (file or block device) to dissect and mount as the root (-i).
    public var image: String?
    /// A store image used as the source (-M NAME without -D or -i).
    public var storeImage: String?
    /// The pool for `storeImage`, nil: the system search path.
    public var storeRoot: String?
    /// --root-hash=, --root-hash-sig=, --verity-data=, --usr-hash=.
    public var verity = ExplicitVerityOptions()
    /// --image-policy=, in systemd's syntax; checked before anything is mounted.
    public var imagePolicy: String?
    /// Trusted certificates for root hash signatures.
    public var verityKeyring = VeritySignatureCheck.defaultKeyringDirectory
    /// --volatile=: what of the tree is kept in memory only.
    public var volatile = VolatileMode.no
    /// Extra mounts, in command-line order (sorted by target when the child makes them).
    public var extra: [ExtraMount] = []

    public init() {}

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalid(option: String, value: String, reason: String)
        case conflicting(String)

        public var description: String {
            switch self {
            case .invalid(let option, let value, let reason): "invalid \(option) value \"\(value)\": \(reason)"
            case .conflicting(let text): text
            }
        }
    }

    /// nspawn's machine name for an image: its file name without ".raw", made valid.
    public static func machineName(forImage path: String) throws(RunnerError) -> String {
        var base = URL(fileURLWithPath: path).lastPathComponent
        if base.hasSuffix(".raw") { base.removeLast(4) }
        return try ContainerConfiguration(directory: "/" + base).resolvedMachineName
    }

    /// The mounts in the order the child makes them: sorted by target path component by
    /// component, so a mount on a parent directory comes before one inside it (as nspawn does);
    /// equal targets keep their command-line order.
    public var orderedMounts: [ExtraMount] {
        extra.enumerated().sorted { a, b in
            let x = a.element.target.split(separator: "/"), y = b.element.target.split(separator: "/")
            for (p, q) in zip(x, y) where p != q { return p < q }
            return x.count != y.count ? x.count < y.count : a.offset < b.offset
        }.map(\.element)
    }
}

/// systemd-nspawn's --volatile= modes.
public enum VolatileMode: String, Sendable, CaseIterable {
    /// A tmpfs root with only the tree's /usr, read-only.
    case yes
    /// The tree read-only, a tmpfs on /var.
    case state
    /// The tree under an overlayfs whose upper layer is a tmpfs (like -x).
    case overlay
    case no

    /// "yes", "state", "overlay", "no", or a boolean; no value means yes.
    public static func parse(_ text: String) throws(MountSettings.Error) -> VolatileMode {
        if let mode = VolatileMode(rawValue: text) { return mode }
        guard let flag = try? ContainerConfiguration.parseBoolean(text, option: "--volatile") else {
            throw .invalid(option: "--volatile", value: text, reason: "expected yes, state, overlay or no")
        }
        return flag ? .yes : .no
    }
}

/// A path given to a mount option: on the host, or inside the container (a "+" prefix).
public struct MountPath: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var inRoot: Bool
    /// --bind's `idmap` option: the source is bound as an ID-mapped mount, so that its
    /// IDs 0..65535 are the container's with --private-users=; without a user namespace it
    /// changes nothing. nil (neither idmap nor noidmap given): noidmap with --private-users=, as
    /// nspawn; idmap with imagectl's default user namespace, so a bind works as without one.
    public var idmap: Bool? = nil
    public init(path: String, inRoot: Bool, idmap: Bool? = nil) {
        self.path = path
        self.inRoot = inRoot
        self.idmap = idmap
    }
    public var description: String { (inRoot ? "+" : "") + path }
}

/// One --bind/--bind-ro/--tmpfs/--overlay/--overlay-ro.
public enum ExtraMount: Sendable, Equatable {
    /// `source` nil: a temporary directory under /var/tmp, removed after the run.
    case bind(source: MountPath?, target: String, readOnly: Bool, recursive: Bool)
    case tmpfs(target: String, flags: UInt, data: String)
    /// `lower` bottom first as on the command line; `upper` nil: read-only overlay; an upper
    /// with an empty path: a temporary directory under /var/tmp. `work` is set by `RootSession`.
    case overlay(lower: [MountPath], upper: MountPath?, work: MountPath?, target: String)

    public var target: String {
        switch self {
        case .bind(_, let target, _, _), .tmpfs(let target, _, _), .overlay(_, _, _, let target): target
        }
    }

    /// Splits at ":" not preceded by a backslash; "\:" becomes ":" (nspawn's escaping).
    static func splitColons(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for ch in text {
            if escaped {
                if ch != ":" && ch != "\\" { current.append("\\") }
                current.append(ch)
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else if ch == ":" {
                parts.append(current)
                current = ""
            } else {
                current.append(ch)
            }
        }
        if escaped { current.append("\\") }
        parts.append(current)
        return parts
    }

    /// An absolute, normalized path without "." or ".." components (a target or source must say
    /// plainly where it is; symlinks are still resolved beneath the root by the child).
    static func normalized(_ path: String, option: String, value: String) throws(MountSettings.Error) -> String {
        guard path.hasPrefix("/") else { throw .invalid(option: option, value: value, reason: "\(path.isEmpty ? "an empty path" : "\"\(path)\"") is not an absolute path") }
        guard !path.contains("\0") else { throw .invalid(option: option, value: value, reason: "a path contains a NUL byte") }
        let parts = path.split(separator: "/")
        guard !parts.contains(where: { $0 == "." || $0 == ".." }) else {
            throw .invalid(option: option, value: value, reason: "\"\(path)\" contains \".\" or \"..\"")
        }
        return "/" + parts.joined(separator: "/")
    }

    static func sourcePath(_ text: String, option: String, value: String) throws(MountSettings.Error) -> MountPath {
        if text.hasPrefix("+") { return MountPath(path: try normalized(String(text.dropFirst()), option: option, value: value), inRoot: true) }
        return MountPath(path: try normalized(text, option: option, value: value), inRoot: false)
    }

    /// `--bind=SRC[:DST[:OPTS]]` / `--bind-ro=`: "+SRC" is inside the container, an empty SRC
    /// a temporary directory; OPTS: rbind (default) or norbind.
    public static func parseBind(_ text: String, readOnly: Bool) throws(MountSettings.Error) -> ExtraMount {
        let option = readOnly ? "--bind-ro" : "--bind"
        let parts = splitColons(text)
        guard parts.count <= 3 else { throw .invalid(option: option, value: text, reason: "expected SOURCE[:TARGET[:OPTIONS]]") }
        var source: MountPath? = parts[0].isEmpty ? nil : try sourcePath(parts[0], option: option, value: text)
        let target: String
        if parts.count >= 2 {
            target = try normalized(parts[1], option: option, value: text)
        } else {
            guard let source else { throw .invalid(option: option, value: text, reason: "an empty source needs a target") }
            target = source.path
        }
        guard target != "/" else { throw .invalid(option: option, value: text, reason: "cannot mount over the container's root") }
        var recursive = true
        if parts.count == 3 {
            for item in parts[2].split(separator: ",", omittingEmptySubsequences: true) {
                switch item {
                case "rbind": recursive = true
                case "norbind": recursive = false
                // nspawn's idmap/noidmap (default noidmap).
                case "idmap", "noidmap":
                    guard source != nil else { throw .invalid(option: option, value: text, reason: "idmap needs a source directory") }
                    source?.idmap = item == "idmap"
                default: throw .invalid(option: option, value: text, reason: "unknown bind option \"\(item)\" (rbind, norbind, idmap and noidmap are supported)")
                }
            }
        }
        return .bind(source: source, target: target, readOnly: readOnly, recursive: recursive)
    }

    /// mount(2) flags a tmpfs option list may name; the rest is passed to tmpfs as data.
    static let flagOptions: [String: (set: UInt, clear: UInt)] = [
        "ro": (UInt(MS_RDONLY), 0), "rw": (0, UInt(MS_RDONLY)),
        "nosuid": (UInt(MS_NOSUID), 0), "suid": (0, UInt(MS_NOSUID)),
        "nodev": (UInt(MS_NODEV), 0), "dev": (0, UInt(MS_NODEV)),
        "noexec": (UInt(MS_NOEXEC), 0), "exec": (0, UInt(MS_NOEXEC)),
        "noatime": (UInt(MS_NOATIME), 0), "strictatime": (UInt(MS_STRICTATIME), 0),
        "relatime": (UInt(MS_RELATIME), 0), "nodiratime": (UInt(MS_NODIRATIME), 0),
    ]

    /// `--tmpfs=PATH[:OPTIONS]`: nodev and strictatime as nspawn sets them, mode=0755 unless the
    /// options say otherwise.
    public static func parseTmpfs(_ text: String) throws(MountSettings.Error) -> ExtraMount {
        let parts = splitColons(text)
        guard parts.count <= 2 else { throw .invalid(option: "--tmpfs", value: text, reason: "expected PATH[:OPTIONS]") }
        let target = try normalized(parts[0], option: "--tmpfs", value: text)
        guard target != "/" else { throw .invalid(option: "--tmpfs", value: text, reason: "cannot mount over the container's root") }
        var flags = UInt(MS_NODEV | MS_STRICTATIME)
        var data: [String] = []
        for item in (parts.count == 2 ? parts[1] : "").split(separator: ",", omittingEmptySubsequences: true).map(String.init) {
            if let flag = flagOptions[item] {
                flags = (flags & ~flag.clear) | flag.set
            } else {
                data.append(item)
            }
        }
        if !data.contains(where: { $0.hasPrefix("mode=") }) { data.insert("mode=0755", at: 0) }
        return .tmpfs(target: target, flags: flags, data: data.joined(separator: ","))
    }

    /// `--overlay=LOWER...:UPPER:TARGET` (two paths: LOWER:UPPER, mounted at UPPER) and
    /// `--overlay-ro=LOWER...:TARGET`; "+" paths are inside the container; an empty UPPER is a
    /// temporary directory.
    public static func parseOverlay(_ text: String, readOnly: Bool) throws(MountSettings.Error) -> ExtraMount {
        let option = readOnly ? "--overlay-ro" : "--overlay"
        let parts = splitColons(text)
        guard parts.count >= 2 else { throw .invalid(option: option, value: text, reason: "at least two paths are needed") }
        var lower: [MountPath] = []
        let upper: MountPath?
        let target: String
        if readOnly {
            for part in parts.dropLast() { lower.append(try sourcePath(part, option: option, value: text)) }
            target = try normalized(parts[parts.count - 1], option: option, value: text)
            upper = nil
        } else {
            let lowerParts = parts.count == 2 ? [parts[0]] : Array(parts.dropLast(2))
            for part in lowerParts { lower.append(try sourcePath(part, option: option, value: text)) }
            let upperText = parts.count == 2 ? parts[1] : parts[parts.count - 2]
            if upperText.isEmpty {
                upper = MountPath(path: "", inRoot: false)
            } else {
                upper = try sourcePath(upperText, option: option, value: text)
            }
            if parts.count == 2 {
                guard let upper, !upper.path.isEmpty else { throw .invalid(option: option, value: text, reason: "an empty upper directory needs a target") }
                target = upper.path
            } else {
                target = try normalized(parts[parts.count - 1], option: option, value: text)
            }
        }
        guard lower.allSatisfy({ !$0.path.isEmpty }) else { throw .invalid(option: option, value: text, reason: "a lower directory is empty") }
        guard target != "/" else { throw .invalid(option: option, value: text, reason: "cannot mount over the container's root") }
        return .overlay(lower: lower, upper: upper, work: nil, target: target)
    }
}

#if canImport(Glibc)
import Glibc
#endif
