import Foundation
import Glibc
import Import

/// The tar entry policy against a real tree: each input is a sequence of entries (encoding
/// below), checked by TarEntryPolicy as import-tar checks libarchive's headers, and what the
/// policy accepts is written into a scratch directory on tmpfs the way libarchive writes it
/// (missing parents made, an existing non-directory replaced). Before anything is written the
/// target checks, by lstat of its own, what the policy promises: a relative path without `.`,
/// `..` or empty components and at most `maximumDepth` deep, no symlink on the way to it or to a
/// hard link's target, and a hard link target that exists and is not a directory. Because those
/// hold before each write, the writes never leave the scratch directory.
///
/// Encoding, repeated until the input ends (at most 64 entries): a kind byte (mod 5: file,
/// directory, symlink, hard link, FIFO), a length byte and that many path bytes, and for a
/// symlink or hard link another length byte and target. An entry whose path or target holds a
/// NUL is skipped (a tar header cannot carry one).
enum TarEntries {
    nonisolated(unsafe) private static var scratch: String?

    static func run(_ bytes: [UInt8]) {
        let parent = scratch ?? {
            let path = "/dev/shm/imagectl-fuzz-tar.\(getpid())"
            mkdir(path, 0o700)
            scratch = path
            return path
        }()
        let root = parent + "/t"
        try? FileManager.default.removeItem(atPath: root)
        guard mkdir(root, 0o755) == 0, let probe = try? TreeProbe(path: root) else { fatalError("fuzz harness: cannot make \(root)") }
        let directory = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(directory) }
        let policy = TarEntryPolicy(probe: probe)

        var reader = Reader(bytes: bytes)
        var count = 0
        while count < 64, let kindByte = reader.byte() {
            count += 1
            let kind: TarEntryHeader.Kind = [.file, .directory, .symlink, .hardlink, .fifo][Int(kindByte) % 5]
            guard let path = reader.field() else { return }
            var target: [UInt8]?
            if kind == .symlink || kind == .hardlink {
                guard let field = reader.field() else { return }
                target = field
            }
            if path.contains(0) || target?.contains(0) == true { continue }
            let header = TarEntryHeader(path: path, kind: kind, hardlinkTarget: kind == .hardlink ? target : nil)
            // A refused entry refuses the whole archive: nothing more is written.
            guard let (relative, link) = try? policy.check(header) else { return }
            checkPromises(relative, kind: kind, link: link, directory: directory, original: path)
            guard write(relative, kind: kind, symlinkTarget: target ?? [], link: link, directory: directory) else { return }
        }
        // Nothing beside the scratch tree.
        let beside = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        require(beside == ["t"], "something was written beside the tree: \(beside)")
    }

    static func show(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self).debugDescription }

    static func checkPromises(_ relative: [UInt8], kind: TarEntryHeader.Kind, link: [UInt8]?, directory: Int32, original: [UInt8]) {
        checkShape(relative, original: original)
        require(!relative.isEmpty || kind == .directory, "an empty path accepted for a non-directory")
        checkNoSymlinkOnTheWay(relative, directory: directory, original: original)
        if kind == .hardlink {
            guard let link else { return require(false, "hard link \(show(original)) accepted without a target") }
            checkShape(link, original: original)
            checkNoSymlinkOnTheWay(link, directory: directory, original: original)
            let type = fileType(link, directory: directory)
            require(type != nil && type != S_IFDIR, "hard link \(show(original)) to \(show(link)): type \(String(describing: type))")
        }
    }

    static func checkShape(_ path: [UInt8], original: [UInt8]) {
        require(path.first != UInt8(ascii: "/"), "absolute path accepted: \(show(original))")
        let components = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        require(path.isEmpty || components.allSatisfy { !$0.isEmpty && !$0.elementsEqual([0x2e]) && !$0.elementsEqual([0x2e, 0x2e]) },
                "path \(show(path)) (from \(show(original))) has an empty, . or .. component")
        require(components.count <= TarEntryPolicy.maximumDepth, "path \(show(original)) is \(components.count) deep")
    }

    /// lstat of each proper prefix: none is a symlink.
    static func checkNoSymlinkOnTheWay(_ path: [UInt8], directory: Int32, original: [UInt8]) {
        var index = path.startIndex
        while let slash = path[index...].firstIndex(of: UInt8(ascii: "/")) {
            let type = fileType(Array(path[..<slash]), directory: directory)
            require(type != S_IFLNK, "\(show(original)) accepted through the symlink \(show(Array(path[..<slash])))")
            if type == nil { return }
            index = slash + 1
        }
    }

    static func fileType(_ path: [UInt8], directory: Int32) -> mode_t? {
        var st = stat()
        let result = (path + [0]).withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { fstatat(directory, $0.baseAddress!, &st, AT_SYMLINK_NOFOLLOW) }
        }
        return result == 0 ? st.st_mode & S_IFMT : nil
    }

    /// Writes the entry as libarchive would; false where libarchive would fail the entry (a
    /// parent that is not a directory, a non-empty directory in the way).
    static func write(_ path: [UInt8], kind: TarEntryHeader.Kind, symlinkTarget: [UInt8], link: [UInt8]?, directory: Int32) -> Bool {
        if path.isEmpty { return true }  // the tree's root itself
        var index = path.startIndex
        while let slash = path[index...].firstIndex(of: UInt8(ascii: "/")) {
            let prefix = Array(path[..<slash])
            switch fileType(prefix, directory: directory) {
            case nil: guard call(prefix, { mkdirat(directory, $0, 0o755) }) else { return false }
            case S_IFDIR: break
            default: return false
            }
            index = slash + 1
        }
        let existing = fileType(path, directory: directory)
        if kind == .directory && existing == S_IFDIR { return true }
        if let existing {
            let flags = existing == S_IFDIR ? AT_REMOVEDIR : 0
            guard call(path, { unlinkat(directory, $0, flags) }) else { return false }
        }
        switch kind {
        case .directory: return call(path) { mkdirat(directory, $0, 0o755) }
        case .symlink: return withCString(symlinkTarget) { target in withCString(path) { symlinkat(target, directory, $0) } } == 0
        case .hardlink: return withCString(link ?? []) { target in withCString(path) { linkat(directory, target, directory, $0, 0) } } == 0
        case .fifo: return call(path) { mkfifoat(directory, $0, 0o644) }
        default:
            return call(path) { p in
                let fd = openat(directory, p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
                if fd >= 0 { close(fd) }
                return fd >= 0 ? 0 : -1
            }
        }
    }

    /// Calls `body` with `bytes` as a C string; true when it returned 0.
    static func call(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> Int32) -> Bool { withCString(bytes, body) == 0 }

    static func withCString<R>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
        (bytes + [0]).withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }

    struct Reader {
        let bytes: [UInt8]
        var index = 0
        mutating func byte() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }
        mutating func field() -> [UInt8]? {
            guard let length = byte(), bytes.count - index >= Int(length) else { return nil }
            defer { index += Int(length) }
            return Array(bytes[index..<(index + Int(length))])
        }
    }
}
