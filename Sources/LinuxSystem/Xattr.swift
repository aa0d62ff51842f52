import CShims
import Glibc

/// Extended attributes of a path, never following a final symlink (the l*xattr(2) calls), so that
/// a symlink inside an image is read as itself.
public enum Xattr {
    /// The attribute names of `path`: llistxattr(2). Empty when the filesystem has none or does not
    /// support xattrs.
    public static func list(_ path: String) throws(SystemCallError) -> [String] {
        while true {
            let size = llistxattr(path, nil, 0)
            if size < 0 {
                let code = img_errno()
                if code == ENOTSUP { return [] }
                if code == EINTR { continue }
                throw SystemCallError("llistxattr", errno: .init(rawValue: code), path: path)
            }
            if size == 0 { return [] }
            var buffer = [CChar](repeating: 0, count: size)
            let got = llistxattr(path, &buffer, size)
            if got < 0 {
                let code = img_errno()
                if code == ERANGE || code == EINTR { continue }  // grew meanwhile: ask again
                throw SystemCallError("llistxattr", errno: .init(rawValue: code), path: path)
            }
            // NUL-separated names.
            return buffer[0..<got].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
    }

    /// The value of attribute `name`, or nil when it is not set: lgetxattr(2).
    public static func get(_ path: String, name: String) throws(SystemCallError) -> [UInt8]? {
        while true {
            let size = lgetxattr(path, name, nil, 0)
            if size < 0 {
                let code = img_errno()
                if code == ENODATA || code == ENOTSUP { return nil }
                if code == EINTR { continue }
                throw SystemCallError("lgetxattr(\(name))", errno: .init(rawValue: code), path: path)
            }
            if size == 0 { return [] }
            var buffer = [UInt8](repeating: 0, count: size)
            let got = lgetxattr(path, name, &buffer, size)
            if got < 0 {
                let code = img_errno()
                if code == ERANGE || code == EINTR { continue }
                if code == ENODATA { return nil }
                throw SystemCallError("lgetxattr(\(name))", errno: .init(rawValue: code), path: path)
            }
            return Array(buffer[0..<got])
        }
    }

    /// The value as UTF-8 text, or nil when not set.
    public static func getString(_ path: String, name: String) throws(SystemCallError) -> String? {
        guard let bytes = try get(path, name: name) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    public enum SetMode: Sendable { case any, create, replace }

    /// Sets attribute `name` to `value`: lsetxattr(2).
    public static func set(_ path: String, name: String, value: [UInt8], mode: SetMode = .any) throws(SystemCallError) {
        let flags: Int32 = switch mode {
        case .any: 0
        case .create: img_XATTR_CREATE
        case .replace: img_XATTR_REPLACE
        }
        try systemCall("lsetxattr(\(name))", path: path) {
            value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, flags) }
        }
    }

    public static func set(_ path: String, name: String, string: String) throws(SystemCallError) {
        try set(path, name: name, value: Array(string.utf8))
    }

    /// Removes attribute `name`: lremovexattr(2). Removing an absent attribute is not an error.
    public static func remove(_ path: String, name: String) throws(SystemCallError) {
        while true {
            if lremovexattr(path, name) == 0 { return }
            let code = img_errno()
            if code == EINTR { continue }
            if code == ENODATA { return }
            throw SystemCallError("lremovexattr(\(name))", errno: .init(rawValue: code), path: path)
        }
    }

    /// fgetxattr(2)/fsetxattr(2)/flistxattr(2) on an open descriptor (used by the tree copy, which
    /// holds descriptors to avoid racing on paths).
    public static func list(fd: Int32) throws(SystemCallError) -> [String] {
        while true {
            let size = flistxattr(fd, nil, 0)
            if size < 0 {
                let code = img_errno()
                if code == ENOTSUP { return [] }
                if code == EINTR { continue }
                throw SystemCallError("flistxattr", errno: .init(rawValue: code))
            }
            if size == 0 { return [] }
            var buffer = [CChar](repeating: 0, count: size)
            let got = flistxattr(fd, &buffer, size)
            if got < 0 {
                let code = img_errno()
                if code == ERANGE || code == EINTR { continue }
                throw SystemCallError("flistxattr", errno: .init(rawValue: code))
            }
            return buffer[0..<got].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
    }

    /// fgetxattr(2); nil when not set.
    public static func get(fd: Int32, name: String) throws(SystemCallError) -> [UInt8]? {
        while true {
            let size = fgetxattr(fd, name, nil, 0)
            if size < 0 {
                let code = img_errno()
                if code == ENODATA || code == ENOTSUP { return nil }
                if code == EINTR { continue }
                throw SystemCallError("fgetxattr(\(name))", errno: .init(rawValue: code))
            }
            if size == 0 { return [] }
            var buffer = [UInt8](repeating: 0, count: size)
            let got = fgetxattr(fd, name, &buffer, size)
            if got < 0 {
                let code = img_errno()
                if code == ERANGE || code == EINTR { continue }
                if code == ENODATA { return nil }
                throw SystemCallError("fgetxattr(\(name))", errno: .init(rawValue: code))
            }
            return Array(buffer[0..<got])
        }
    }

    /// fsetxattr(2).
    public static func set(fd: Int32, name: String, value: [UInt8]) throws(SystemCallError) {
        try systemCall("fsetxattr(\(name))") {
            value.withUnsafeBytes { fsetxattr(fd, name, $0.baseAddress, $0.count, 0) }
        }
    }
}
