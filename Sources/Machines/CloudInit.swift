import Foundation
import LinuxSystem

/// The files of cloud-init's NoCloud datasource for one machine: user-data, meta-data and
/// optionally network-config. Read from `--cloud-init=DIR` or `--cloud-init-user-data=FILE`,
/// checked, and completed with defaults that make a cloud image usable with one command:
/// meta-data names the machine (`instance-id` = its UUID, so a new -x instance runs cloud-init's
/// first-boot modules again and a persistent image with a fixed UUID does not;
/// `local-hostname` = its name), and without user-data an ssh key given to the runner goes on
/// the image's default user. Shared by the VM runner (a CIDATA volume) and the container runner
/// (a read-only bind at /run/host/cloud-init, named on the init's command line).
public struct CloudInitData: Sendable, Equatable {
    public var userData: [UInt8]
    public var metaData: [UInt8]
    public var networkConfig: [UInt8]?
    /// True when the user gave no user-data: a runner that makes an ssh key later (vm
    /// --pass-ssh-key) replaces it with `defaultUserData(sshPublicKey:)`.
    public var userDataIsDefault = false

    /// cloud-init reads user-data of any size, but a seed is meant for configuration, not
    /// payloads: the same 1 MiB bound as a system credential.
    public static let maximumSize = 1 << 20

    /// `--cloud-init=` value meaning "no directory: the defaults only".
    public static let defaultsOnly = "defaults"

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case missingDirectory(String)
        case notADirectory(String)
        case unreadable(path: String, reason: String)
        case tooLarge(path: String)
        case notUserData(path: String)
        case bothSources

        public var description: String {
            switch self {
            case .missingDirectory(let path): "--cloud-init: \(path): no such directory"
            case .notADirectory(let path): "--cloud-init: \(path) is not a directory"
            case .unreadable(let path, let reason): "cloud-init data \(path): \(reason)"
            case .tooLarge(let path): "cloud-init data \(path) is larger than 1 MiB"
            case .notUserData(let path): "cloud-init user-data \(path) starts with neither #cloud-config nor #! (a cloud-config or a script)"
            case .bothSources: "--cloud-init and --cloud-init-user-data cannot be combined (put the user-data in the directory)"
            }
        }
    }

    public init(userData: [UInt8], metaData: [UInt8], networkConfig: [UInt8]? = nil) {
        self.userData = userData
        self.metaData = metaData
        self.networkConfig = networkConfig
    }

    /// Reads and checks the user's files; nil when neither option was given. `sshPublicKey`
    /// (one line, as in id_ed25519.pub) becomes the user-data when there is none.
    public static func load(directory: String?, userDataFile: String?, instanceID: UUID, hostname: String,
                            sshPublicKey: String?) throws(Error) -> CloudInitData? {
        if directory != nil && userDataFile != nil { throw .bothSources }
        var userData: [UInt8]?
        var metaData: [UInt8]?
        var networkConfig: [UInt8]?
        if let directory, directory != defaultsOnly {
            guard let status = try? FileStatus.stat(directory) else { throw .missingDirectory(directory) }
            guard status.kind == .directory else { throw .notADirectory(directory) }
            userData = try readOptional(directory + "/user-data")
            metaData = try readOptional(directory + "/meta-data")
            networkConfig = try readOptional(directory + "/network-config")
            if let userData { try checkUserData(userData, path: directory + "/user-data") }
        } else if let userDataFile {
            guard let data = try readOptional(userDataFile) else { throw .unreadable(path: userDataFile, reason: "no such file") }
            try checkUserData(data, path: userDataFile)
            userData = data
        } else if directory == nil {
            return nil
        }
        var data = CloudInitData(
            userData: userData ?? defaultUserData(sshPublicKey: sshPublicKey),
            metaData: metaData ?? defaultMetaData(instanceID: instanceID, hostname: hostname),
            networkConfig: networkConfig)
        data.userDataIsDefault = userData == nil
        return data
    }

    /// A cloud-config or a script, as cloud-init tells them apart by their first line.
    static func checkUserData(_ data: [UInt8], path: String) throws(Error) {
        guard data.starts(with: Array("#cloud-config".utf8)) || data.starts(with: Array("#!".utf8)) else {
            throw .notUserData(path: path)
        }
    }

    /// The file's bytes, nil when it does not exist; a FIFO or device is refused without blocking.
    static func readOptional(_ path: String) throws(Error) -> [UInt8]? {
        guard (try? FileStatus.lstat(path)) != nil else { return nil }
        let data: [UInt8]
        do {
            data = try readRegularFile(path, upTo: maximumSize + 1)
        } catch {
            throw .unreadable(path: path, reason: error.errno == .invalidArgument ? "not a regular file" : "\(error)")
        }
        guard data.count <= maximumSize else { throw .tooLarge(path: path) }
        return data
    }

    /// The machine UUID for a persistent image booted with cloud-init data and no --uuid=: one
    /// that stays the same from boot to boot of the image at `path` (so its instance-id does, and
    /// cloud-init runs its first-boot modules once), and differs for a copy elsewhere. Two
    /// FNV-1a 64 hashes of the path, as a version 4 / RFC 4122 variant UUID: an identifier, not
    /// a secret.
    public static func stableUUID(for path: String) -> UUID {
        func fnv(_ seed: UInt64) -> UInt64 {
            var hash = seed
            for byte in path.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x100000001b3
            }
            return hash
        }
        let words = [fnv(0xcbf29ce484222325), fnv(0x84222325cbf29ce4 ^ 0x696d616765637463)]
        var bytes = words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * UInt64($0))) } }
        bytes[6] = bytes[6] & 0x0f | 0x40
        bytes[8] = bytes[8] & 0x3f | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    public static func defaultMetaData(instanceID: UUID, hostname: String) -> [UInt8] {
        Array("instance-id: \(instanceID.uuidString.lowercased())\nlocal-hostname: \(hostname)\n".utf8)
    }

    /// `ssh_authorized_keys` at the top level of a cloud-config goes to the default user (the
    /// distribution's: debian, ubuntu, fedora ...).
    public static func defaultUserData(sshPublicKey: String?) -> [UInt8] {
        var text = "#cloud-config\n"
        if let key = sshPublicKey?.trimmingCharacters(in: .whitespacesAndNewlines), !key.isEmpty {
            text += "ssh_authorized_keys:\n  - \"\(key.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"\n"
        }
        return Array(text.utf8)
    }

    /// The files as NoCloud names them.
    public var files: [(name: String, contents: [UInt8])] {
        var list = [("user-data", userData), ("meta-data", metaData)]
        if let networkConfig { list.append(("network-config", networkConfig)) }
        return list
    }

    /// Writes the files into `directory` (mode 0644: the guest's cloud-init reads them as root,
    /// but a container's root may be mapped to another uid on the host).
    public func write(to directory: String) throws {
        for (name, contents) in files {
            let path = directory + "/" + name
            guard FileManager.default.createFile(atPath: path, contents: Data(contents), attributes: [.posixPermissions: 0o644]) else {
                throw Error.unreadable(path: path, reason: "cannot be written")
            }
        }
    }
}
