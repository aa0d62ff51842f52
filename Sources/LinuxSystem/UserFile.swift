import Glibc
import SystemPackage

/// Opening a path a user named on the command line (an image, an archive, a tree, a kernel)
/// without trusting what is there.
///
/// A plain open(2) of a FIFO blocks until a writer appears, and one of a character device such
/// as /dev/zero streams for ever; either hangs a verb (with its locks held) in a call no signal
/// handler can end. So the path is opened with O_NONBLOCK, which returns at once for a FIFO,
/// and the type is checked with fstat(2) on that descriptor: checking with stat(2) first would
/// leave a window in which a FIFO could be swapped in before the open. Only then, for a type the
/// caller accepts, is O_NONBLOCK cleared again so that reads block as usual.
public enum UserFile {
    /// The file types a verb accepts.
    public struct Kinds: OptionSet, Sendable, Equatable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        public static let regular = Kinds(rawValue: 1)
        public static let blockDevice = Kinds(rawValue: 2)
        public static let directory = Kinds(rawValue: 4)
        /// What a disk image can be.
        public static let image: Kinds = [.regular, .blockDevice]

        /// Whether a file of `kind` is accepted (not `contains`: that name would make the
        /// OptionSet's own `contains(.regular)` calls below resolve to this method).
        func accepts(_ kind: FileStatus.Kind) -> Bool {
            switch kind {
            case .regular: contains(Kinds.regular)
            case .blockDevice: contains(Kinds.blockDevice)
            case .directory: contains(Kinds.directory)
            default: false
            }
        }

        /// "a regular file or block device"
        var phrase: String {
            var names: [String] = []
            if contains(.regular) { names.append("regular file") }
            if contains(.blockDevice) { names.append("block device") }
            if contains(.directory) { names.append("directory") }
            guard let last = names.popLast() else { return "nothing" }
            return "a " + (names.isEmpty ? last : names.joined(separator: ", ") + " or " + last)
        }
    }

    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        case wrongType(path: String, found: FileStatus.Kind, accepted: Kinds)

        public var description: String {
            switch self {
            case .wrongType(let path, let found, let accepted):
                "\(path) is \(UserFile.phrase(found)), not \(accepted.phrase)"
            }
        }
    }

    public enum Access: Sendable {
        case readOnly, readWrite

        var flags: Int32 { self == .readOnly ? O_RDONLY : O_RDWR }
    }

    /// Opens `path` as described above: open(2) with O_NONBLOCK|O_NOCTTY|O_CLOEXEC (plus
    /// O_NOFOLLOW when `followSymlinks` is false), fstat(2) on the descriptor, then fcntl(2)
    /// F_SETFL without O_NONBLOCK. Throws `Error.wrongType` for a type not in `accepting` (a
    /// FIFO, socket or character device as an image) and `SystemCallError` for a failed call.
    /// The caller owns the returned descriptor.
    public static func open(_ path: String, accepting: Kinds, access: Access = .readOnly,
                            followSymlinks: Bool = true) throws -> (descriptor: FileDescriptor, status: FileStatus) {
        var flags = access.flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
        if !followSymlinks { flags |= O_NOFOLLOW }
        let fd: Int32
        do {
            fd = try systemCall("open", path: path) { Glibc.open(path, flags) }
        } catch {
            // A socket cannot be opened at all (ENXIO), nor a FIFO for writing without a reader:
            // say what the path is rather than "No such device or address".
            if error.errno == .noSuchAddressOrDevice,
               let status = try? followSymlinks ? FileStatus.stat(path) : FileStatus.lstat(path),
               !accepting.accepts(status.kind) {
                throw Error.wrongType(path: path, found: status.kind, accepted: accepting)
            }
            throw error
        }
        let descriptor = FileDescriptor(rawValue: fd)
        do {
            let status = try FileStatus.fstat(fd, path: path)
            guard accepting.accepts(status.kind) else {
                throw Error.wrongType(path: path, found: status.kind, accepted: accepting)
            }
            let current = try systemCall("fcntl(F_GETFL)", path: path) { fcntl(fd, F_GETFL) }
            try systemCall("fcntl(F_SETFL)", path: path) { fcntl(fd, F_SETFL, current & ~O_NONBLOCK) }
            return (descriptor, status)
        } catch {
            try? descriptor.close()
            throw error
        }
    }

    /// Checks that `path` is of a type in `accepting`, opening it as `open` does (so a FIFO
    /// neither blocks nor passes) and closing it again. Returns what fstat(2) said.
    @discardableResult
    public static func check(_ path: String, accepting: Kinds, access: Access = .readOnly) throws -> FileStatus {
        let (descriptor, status) = try open(path, accepting: accepting, access: access)
        try? descriptor.close()
        return status
    }

    /// "a FIFO", "a socket", "a character device" ...
    static func phrase(_ kind: FileStatus.Kind) -> String {
        switch kind {
        case .regular: "a regular file"
        case .directory: "a directory"
        case .symbolicLink: "a symbolic link"
        case .blockDevice: "a block device"
        case .characterDevice: "a character device"
        case .fifo: "a FIFO"
        case .socket: "a socket"
        case .unknown: "a file of unknown type"
        }
    }
}
