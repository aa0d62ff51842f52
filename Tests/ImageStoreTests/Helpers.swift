import Foundation
import ImageStore
import LinuxSystem
import Testing
import TestSupport

/// A store over a fresh temporary pool.
struct ScratchStore {
    let directory: TemporaryDirectory
    let store: ImageStore
    var pool: String { store.poolPath }

    init() throws {
        directory = try TemporaryDirectory(prefix: "imagectl-store")
        store = try ImageStore(root: directory.appending("pool"))
    }

    /// A directory image with one file, made by hand (as another tool would leave it).
    @discardableResult
    func makeDirectoryImage(_ name: String, content: String = "hello\n") throws -> String {
        let path = "\(pool)/\(name)"
        try FileManager.default.createDirectory(atPath: path + "/etc", withIntermediateDirectories: true)
        try content.write(toFile: path + "/etc/os-release", atomically: false, encoding: .utf8)
        return path
    }

    /// A raw image: `size` bytes, sparse except for `data` at offset 1 MiB.
    @discardableResult
    func makeRawImage(_ name: String, size: Int = 8 << 20, data: String = "raw data") throws -> String {
        let path = "\(pool)/\(name).raw"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.seek(toOffset: 1 << 20)
        try handle.write(contentsOf: Data(data.utf8))
        try handle.close()
        return path
    }
}

/// Runs a tool and requires success.
@discardableResult
func run(_ tool: String, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Tool.Result {
    let result = try Tool.run(tool, arguments)
    #expect(result.status == 0, "\(tool) \(arguments.joined(separator: " ")): \(result.stderr)", sourceLocation: sourceLocation)
    return result
}

/// Builds a tree with everything a copy must keep: owners, setuid, odd modes, xattrs (user and
/// trusted), POSIX ACLs (access and default), hard links, symlinks (dangling too), a character
/// device, a fifo, a sparse file, an empty file, fixed timestamps.
func makeRichTree(at root: String) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: root + "/etc/private", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/usr/bin", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/srv/shared", withIntermediateDirectories: true)
    try "root:x:0:0::/root:/bin/sh\n".write(toFile: root + "/etc/passwd", atomically: false, encoding: .utf8)
    try "secret\n".write(toFile: root + "/etc/private/key", atomically: false, encoding: .utf8)
    try "#!/bin/sh\necho hi\n".write(toFile: root + "/usr/bin/tool", atomically: false, encoding: .utf8)
    _ = fm.createFile(atPath: root + "/etc/empty", contents: nil)
    try run("chown", ["1234:5678", root + "/etc/passwd"])
    try run("chown", ["-h", "4321:8765", root + "/etc/private"])
    try run("chmod", ["0700", root + "/etc/private"])
    try run("chmod", ["0600", root + "/etc/private/key"])
    try run("chmod", ["4755", root + "/usr/bin/tool"])
    try run("chmod", ["1777", root + "/srv/shared"])
    // Hard links: three names for one inode, one in another directory.
    try run("ln", [root + "/usr/bin/tool", root + "/usr/bin/tool-link"])
    try run("ln", [root + "/usr/bin/tool", root + "/etc/tool-link"])
    // Symlinks: relative, absolute (pointing outside: must stay a symlink), dangling.
    try run("ln", ["-s", "../usr/bin/tool", root + "/etc/relative"])
    try run("ln", ["-s", "/etc/shadow", root + "/etc/absolute"])
    try run("ln", ["-s", "nowhere", root + "/etc/dangling"])
    try run("mknod", [root + "/dev/null", "c", "1", "3"])
    try run("mkfifo", [root + "/dev/fifo"])
    // xattrs and ACLs.
    try run("setfattr", ["-n", "user.comment", "-v", "image file", root + "/etc/passwd"])
    try run("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", root + "/etc/private"])
    try run("setfacl", ["-m", "u:1000:rwx,g:100:r", root + "/etc/passwd"])
    try run("setfacl", ["-d", "-m", "u:1000:rx", root + "/srv/shared"])
    // Sparse: 64 MiB with data at 0 and at 40 MiB.
    let sparse = root + "/srv/sparse.img"
    _ = fm.createFile(atPath: sparse, contents: Data("start".utf8))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: sparse))
    try handle.seek(toOffset: 40 << 20)
    try handle.write(contentsOf: Data(repeating: 0xab, count: 8192))
    try handle.truncate(atOffset: 64 << 20)
    try handle.close()
    // Fixed timestamps, deepest first so directory times stick.
    try run("find", [root, "-depth", "-exec", "touch", "-h", "-d", "2020-02-03 04:05:06.123456789", "{}", "+"])
}

/// What a copy must keep of one entry.
struct EntryRecord: Equatable, CustomStringConvertible {
    var kind: FileStatus.Kind
    var permissions: UInt32
    var owner: UInt32
    var group: UInt32
    var size: UInt64
    var modification: FileTime
    var deviceNumber: UInt64
    var linkTarget: String?
    var xattrs: [String: [UInt8]]
    /// Index of the first path with the same inode (hard-link grouping), nil when unique.
    var hardLinkGroup: String?

    var description: String {
        "\(kind) \(String(permissions, radix: 8)) \(owner):\(group) size \(size) mtime \(modification.seconds).\(modification.nanoseconds) rdev \(deviceNumber) -> \(linkTarget ?? "") xattrs \(xattrs.keys.sorted()) link \(hardLinkGroup ?? "-")"
    }
}

/// Records every entry under `root` by relative path. `skipRootTimes`: the top directory's own
/// metadata is not compared (an image's top is the store's business).
func recordTree(_ root: String, includeRoot: Bool = false) throws -> [String: EntryRecord] {
    var result: [String: EntryRecord] = [:]
    var firstPathOfInode: [[UInt64]: String] = [:]
    var pending = [""]
    while let relative = pending.popLast() {
        let path = relative.isEmpty ? root : root + "/" + relative
        let status = try FileStatus.lstat(path)
        var xattrs: [String: [UInt8]] = [:]
        for name in try Xattr.list(path) { xattrs[name] = try Xattr.get(path, name: name) }
        var group: String?
        if status.kind != .directory && status.links > 1 {
            let key = [status.device, status.inode]
            if let first = firstPathOfInode[key] { group = first } else { firstPathOfInode[key] = relative; group = relative }
        }
        let record = EntryRecord(
            kind: status.kind, permissions: status.permissions, owner: status.owner, group: status.group,
            size: status.kind == .directory ? 0 : status.size, modification: status.modificationTime,
            deviceNumber: status.kind == .blockDevice || status.kind == .characterDevice ? status.deviceNumber : 0,
            linkTarget: status.kind == .symbolicLink ? try FileSystem.symbolicLinkTarget(path) : nil,
            xattrs: xattrs, hardLinkGroup: group)
        if !relative.isEmpty || includeRoot { result[relative.isEmpty ? "." : relative] = record }
        if status.kind == .directory {
            for name in try FileSystem.entries(path).sorted(by: >) {
                pending.append(relative.isEmpty ? name : relative + "/" + name)
            }
        }
    }
    return result
}

/// Compares two trees entry by entry (metadata and regular-file contents).
func expectSameTree(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let left = try recordTree(a)
    let right = try recordTree(b)
    #expect(Set(left.keys) == Set(right.keys), "entries differ: \(Set(left.keys).symmetricDifference(Set(right.keys)).sorted())", sourceLocation: sourceLocation)
    for (path, record) in left.sorted(by: { $0.key < $1.key }) {
        guard let other = right[path] else { continue }
        #expect(record == other, "\(path): \(record) vs \(other)", sourceLocation: sourceLocation)
        if record.kind == .regular {
            let same = try Tool.run("cmp", ["-s", a + "/" + path, b + "/" + path]).status == 0
            #expect(same, "\(path): contents differ", sourceLocation: sourceLocation)
        }
    }
}

/// Allocated bytes of one file (st_blocks * 512).
func allocated(_ path: String) throws -> UInt64 {
    try FileStatus.lstat(path).allocatedBytes
}
