import Crypto
import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// Looking at an assembled image tree: listing, mtree manifests, and a temporary private mount
/// to do it on.
public enum ImageTree {
    /// Mounts `plan` on a fresh directory under /run/imagectl/tmp, runs `body` with the tree's
    /// path, and tears everything down afterwards, on every path.
    public static func withTemporaryMount<T: Sendable>(_ plan: MountPlan, keyringDirectory: String = VeritySignatureCheck.defaultKeyringDirectory,
                                                       _ body: (String) async throws -> T) async throws -> T {
        let base = ProcessInfo.processInfo.environment["IMAGECTL_TMP_MOUNTS"] ?? "/run/imagectl/tmp"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let target = "\(base)/\(UUID().uuidString.prefix(12))"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        do {
            _ = try await ImageMounter.mount(plan, at: target, options: .init(mkdir: false, record: false, keyringDirectory: keyringDirectory))
        } catch {
            try? FileManager.default.removeItem(atPath: target)
            throw error
        }
        do {
            let result = try await body(target)
            try ImageMounter.unmount(target, removeDirectory: true)
            return result
        } catch {
            try? ImageMounter.unmount(target, removeDirectory: true)
            throw error
        }
    }

    struct Entry {
        var path: String  // relative, "" for the root
        var info: stat
    }

    /// Every entry below `root`, depth first in name order, never following symlinks and never
    /// crossing into another filesystem than the ones mounted there by the plan.
    static func walk(_ root: String, _ visit: (Entry) throws -> Void) throws {
        func recurse(_ relative: String) throws {
            let full = relative.isEmpty ? root : "\(root)/\(relative)"
            var st = stat()
            guard lstat(full, &st) == 0 else { throw SystemCallError.current("lstat", path: full) }
            try visit(Entry(path: relative, info: st))
            guard st.st_mode & S_IFMT == S_IFDIR else { return }
            let names = try FileManager.default.contentsOfDirectory(atPath: full).sorted()
            for name in names { try recurse(relative.isEmpty ? name : "\(relative)/\(name)") }
        }
        try recurse("")
    }

    /// One line per entry: "/" then paths, directories ending in "/".
    public static func list(_ root: String) throws -> [String] {
        var lines: [String] = []
        try walk(root) { entry in
            let isDir = entry.info.st_mode & S_IFMT == S_IFDIR
            lines.append(entry.path.isEmpty ? "/" : "/" + entry.path + (isDir ? "/" : ""))
        }
        return lines
    }

    /// An mtree(5)-style manifest: path, type, mode, uid, gid, size and sha256 for files, link
    /// target for symlinks, device numbers for devices, mtime.
    public static func mtree(_ root: String) throws -> [String] {
        var lines: [String] = []
        try walk(root) { entry in
            let st = entry.info
            let full = entry.path.isEmpty ? root : "\(root)/\(entry.path)"
            var fields = [entry.path.isEmpty ? "." : "./" + escape(entry.path)]
            let type: String
            switch st.st_mode & S_IFMT {
            case S_IFDIR: type = "dir"
            case S_IFREG: type = "file"
            case S_IFLNK: type = "link"
            case S_IFCHR: type = "char"
            case S_IFBLK: type = "block"
            case S_IFIFO: type = "fifo"
            case S_IFSOCK: type = "socket"
            default: type = "unknown"
            }
            fields.append("type=\(type)")
            fields.append("mode=" + String(format: "%04o", st.st_mode & 0o7777))
            fields.append("uid=\(st.st_uid)")
            fields.append("gid=\(st.st_gid)")
            if type == "file" {
                fields.append("size=\(st.st_size)")
                fields.append("sha256digest=\(try sha256(full))")
            } else if type == "link" {
                fields.append("link=" + escape((try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? ""))
            } else if type == "char" || type == "block" {
                fields.append("device=\(major(st.st_rdev)),\(minor(st.st_rdev))")
            }
            fields.append("time=\(st.st_mtim.tv_sec).\(String(format: "%09d", st.st_mtim.tv_nsec))")
            lines.append(fields.joined(separator: " "))
        }
        return lines
    }

    static func major(_ dev: dev_t) -> UInt64 { (UInt64(dev) >> 8) & 0xfff | ((UInt64(dev) >> 32) & ~0xfff) }
    static func minor(_ dev: dev_t) -> UInt64 { (UInt64(dev) & 0xff) | ((UInt64(dev) >> 12) & ~0xff) }

    /// mtree escapes whitespace, backslash and non-printable bytes as \ooo.
    static func escape(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            if byte <= 0x20 || byte >= 0x7f || byte == 0x5c || byte == 0x23 {
                out += String(format: "\\%03o", byte)
            } else {
                out.append(Character(UnicodeScalar(byte)))
            }
        }
        return out
    }

    static func sha256(_ path: String) throws -> String {
        let fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec, .noFollow])
        let handle = FileHandle(fileDescriptor: fd.rawValue, closeOnDealloc: true)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Copying between an image tree and the host. The image side is always opened with openat2
/// RESOLVE_IN_ROOT, so that a symlink in the image cannot point the copy at a host path.
extension ImageTree {
    public enum CopyError: Swift.Error, CustomStringConvertible {
        case message(String)
        public var description: String { switch self { case .message(let m): m } }
    }

    /// Copies PATH of the tree at `root` to `destination` (a host path, or "-" for stdout).
    public static func copyOut(root: String, path: String, destination: String) throws {
        let rootFD = try FileDescriptorBox.openDirectory(root)
        let source = try OpenBeneath.open(path, in: rootFD.fd, flags: OpenBeneath.pathOnly)
        defer { try? source.close() }
        let fdPath = "/proc/\(getpid())/fd/\(source.rawValue)"
        switch OpenBeneath.fileType(path, in: rootFD.fd) {
        case S_IFREG:
            if destination == "-" {
                let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: fdPath))
                defer { try? handle.close() }
                while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                    FileHandle.standardOutput.write(chunk)
                }
            } else {
                try runCopy(["-a", "-H", "--", fdPath, destination])
            }
        case S_IFDIR:
            guard destination != "-" else { throw CopyError.message( "\(path) is a directory: cannot write it to standard output") }
            try runCopy(["-a", "-H", "-T", "--", fdPath, destination])
        default:
            guard destination != "-" else { throw CopyError.message( "\(path) is not a regular file") }
            try runCopy(["-a", "-H", "--", fdPath, destination])
        }
    }

    /// Copies `source` (a host path, or "-" for stdin) to PATH inside the tree at `root`.
    public static func copyIn(root: String, source: String, path: String) throws {
        let rootFD = try FileDescriptorBox.openDirectory(root)
        let parentPath = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        guard !name.isEmpty, name != "..", name != "." else { throw CopyError.message( "\(path): not a file path") }
        let parent = try OpenBeneath.open(parentPath.isEmpty ? "/" : parentPath, in: rootFD.fd, flags: OpenBeneath.pathOnly | O_DIRECTORY)
        defer { try? parent.close() }
        let target = "/proc/\(getpid())/fd/\(parent.rawValue)/\(name)"
        if source == "-" {
            // Write through a new file opened beneath the parent directory, never through a symlink.
            let out = try OpenBeneath.open(name, in: parent, flags: O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o644, scope: .beneath, noSymlinks: true)
            let handle = FileHandle(fileDescriptor: out.rawValue, closeOnDealloc: true)
            defer { try? handle.close() }
            while let chunk = try FileHandle.standardInput.read(upToCount: 1 << 20), !chunk.isEmpty {
                try handle.write(contentsOf: chunk)
            }
        } else {
            // -T: the destination is the name itself; --no-dereference keeps symlinks as links.
            try runCopy(["-a", "-T", "--no-dereference", "--", source, target])
        }
    }

    static func runCopy(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/cp")
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CopyError.message( "copy failed (cp exited with \(process.terminationStatus))") }
    }
}

/// An open directory descriptor closed when the box goes away.
final class FileDescriptorBox {
    let fd: FileDescriptor
    init(_ fd: FileDescriptor) { self.fd = fd }
    deinit { try? fd.close() }
    static func openDirectory(_ path: String) throws -> FileDescriptorBox {
        FileDescriptorBox(try FileDescriptor.open(FilePath(path), .readOnly, options: [.directory, .closeOnExec]))
    }
}
