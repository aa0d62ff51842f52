import CShims
import Foundation
import Glibc
import SystemPackage

/// Opening paths inside an image's tree so that nothing in the tree (absolute symlinks, "..",
/// magic links) can lead outside it: openat2(2) with RESOLVE_IN_ROOT (the tree's root acts as
/// "/" for the lookup) or RESOLVE_BENEATH (the lookup fails instead of leaving).
public enum OpenBeneath {
    /// O_PATH (010000000, asm-generic/fcntl.h): Swift's Glibc module does not export it.
    public static let pathOnly: Int32 = 0o10000000

    public enum Scope: Sendable {
        /// Absolute symlinks and ".." resolve as if `root` were "/" (RESOLVE_IN_ROOT).
        case inRoot
        /// Any escape fails with EXDEV (RESOLVE_BENEATH).
        case beneath
    }

    /// openat2(2) of `path` relative to `root` with `flags` (O_*), never crossing out of `root`
    /// and never following /proc magic links. `noSymlinks` adds RESOLVE_NO_SYMLINKS.
    public static func open(_ path: String, in root: FileDescriptor, flags: Int32, mode: mode_t = 0,
                            scope: Scope = .inRoot, noSymlinks: Bool = false) throws -> FileDescriptor {
        var resolve = UInt64(RESOLVE_NO_MAGICLINKS)
        resolve |= scope == .inRoot ? UInt64(RESOLVE_IN_ROOT) : UInt64(RESOLVE_BENEATH)
        if noSymlinks { resolve |= UInt64(RESOLVE_NO_SYMLINKS) }
        let relative = path.drop { $0 == "/" }
        let target = relative.isEmpty ? "." : String(relative)
        let fd = try systemCall("openat2", path: path) {
            img_openat2(root.rawValue, target, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode), resolve)
        }
        return FileDescriptor(rawValue: fd)
    }

    /// Reads a whole regular file inside `root`, refusing more than `limit` bytes. Returns nil
    /// when the file does not exist.
    public static func readFile(_ path: String, in root: FileDescriptor, limit: Int = 1 << 20) throws -> [UInt8]? {
        let fd: FileDescriptor
        do {
            fd = try open(path, in: root, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch let error as SystemCallError where error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory {
            return nil
        }
        defer { try? fd.close() }
        var st = stat()
        try systemCall("fstat", path: path) { fstat(fd.rawValue, &st) }
        guard st.st_mode & S_IFMT == S_IFREG else { return nil }
        guard st.st_size <= limit else { throw SystemCallError("read", errno: .fileTooLarge, path: path) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit { throw SystemCallError("read", errno: .fileTooLarge, path: path) }
        }
        return result
    }

    /// True when `path` exists inside `root` (any file type; symlinks followed within root).
    public static func exists(_ path: String, in root: FileDescriptor) -> Bool {
        guard let fd = try? open(path, in: root, flags: pathOnly) else { return false }
        try? fd.close()
        return true
    }

    /// The type bits (S_IFMT) of `path` inside `root`, following symlinks within it.
    public static func fileType(_ path: String, in root: FileDescriptor) -> mode_t? {
        guard let fd = try? open(path, in: root, flags: pathOnly) else { return nil }
        defer { try? fd.close() }
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return nil }
        return st.st_mode & S_IFMT
    }

    /// Names in the directory `path` inside `root`, or nil when it is not a directory.
    public static func directoryEntries(_ path: String, in root: FileDescriptor) -> [String]? {
        guard let fd = try? open(path, in: root, flags: O_RDONLY | O_DIRECTORY) else { return nil }
        guard let dir = fdopendir(fd.rawValue) else { try? fd.close(); return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
