import CShims
import Glibc

/// System calls behind --private-users= (UserNamespace.swift decides, this file does).
enum UserNamespaceSystem {
    /// A user namespace whose UID and GID map is "0 base size" (img_userns_create: a helper
    /// cloned into it, its maps written from here); the returned fd is close-on-exec.
    static func makeNamespace(base: UInt32, size: UInt32) throws(RunnerError) -> Int32 {
        let fd = img_userns_create(base, size)
        guard fd >= 0 else { throw .startFailed(step: "user namespace \(base):\(size)", errno: img_errno()) }
        return fd
    }

    /// nil when the tree at `path` can be ID-mapped (open_tree clone + mount_setattr
    /// MOUNT_ATTR_IDMAP, thrown away), else the errno of the refusal.
    static func idmapRefusal(path: String, namespace fd: Int32) -> Int32? {
        img_idmap_probe(path, fd) == 0 ? nil : img_errno()
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Owner of a path (not following a final symlink).
    static func owner(of path: String) -> (uid: UInt32, gid: UInt32)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (st.st_uid, st.st_gid)
    }

    /// Whether `path` is on a read-only mount (statvfs ST_RDONLY).
    static func isReadOnlyMount(_ path: String) -> Bool {
        var st = statvfs()
        return statvfs(path, &st) == 0 && (st.f_flag & UInt(ST_RDONLY)) != 0
    }

    /// Shifts the owners of every inode of the tree at `root` (one file system, not crossing into
    /// other mounts, symlinks not followed) with `map` (old ID -> new ID), keeping setuid/setgid
    /// bits (chown clears them), shifting the IDs in POSIX ACLs and re-writing file capabilities
    /// (chown removes them) as version 3 with `capabilityRoot` as their root ID. The root
    /// directory is changed last: its owner is the mark that the whole tree was shifted.
    static func shiftOwners(root: String, capabilityRoot: UInt32, map: @escaping (UInt32) -> UInt32) throws(RunnerError) {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .startFailed(step: "open \(root)", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            throw .startFailed(step: "stat \(root)", errno: code)
        }
        var walker = OwnerShift(device: st.st_dev, capabilityRoot: capabilityRoot, map: map)
        do {
            try walker.walk(directory: fd, path: root)  // closes fd
        }
        try walker.shift(at: AT_FDCWD, name: root, stat: st, path: root)
    }
}

/// The recursive walk of `shiftOwners`.
private struct OwnerShift {
    let device: UInt
    let capabilityRoot: UInt32
    let map: (UInt32) -> UInt32

    init(device: UInt, capabilityRoot: UInt32, map: @escaping (UInt32) -> UInt32) {
        self.device = device
        self.capabilityRoot = capabilityRoot
        self.map = map
    }

    /// Shifts every entry of the directory `fd` (closed on return), depth first.
    mutating func walk(directory fd: Int32, path: String) throws(RunnerError) {
        guard let dir = fdopendir(fd) else {
            let code = errno
            _ = close(fd)
            throw .startFailed(step: "opendir \(path)", errno: code)
        }
        defer { closedir(dir) }
        let dirFD = dirfd(dir)
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw .startFailed(step: "readdir \(path)", errno: errno) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw .startFailed(step: "stat \(path)/\(name)", errno: errno)
            }
            // Another file system mounted below the root is not part of the tree (nspawn stays
            // on one file system too).
            if st.st_dev != device { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let child = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
                guard child >= 0 else { throw .startFailed(step: "open \(path)/\(name)", errno: errno) }
                try walk(directory: child, path: path + "/" + name)
            }
            try shift(at: dirFD, name: name, stat: st, path: path + "/" + name)
        }
    }

    /// Shifts one inode: owner, then the mode bits chown cleared, ACLs and file capabilities.
    func shift(at dirFD: Int32, name: String, stat st: stat, path: String) throws(RunnerError) {
        let uid = map(st.st_uid)
        let gid = map(st.st_gid)
        let isLink = (st.st_mode & S_IFMT) == S_IFLNK
        if uid == st.st_uid && gid == st.st_gid && !isLink {
            // Nothing to change; ACL entries may still hold IDs of another base.
            try shiftACLs(at: dirFD, name: name, path: path)
            return
        }
        let isFile = (st.st_mode & S_IFMT) == S_IFREG
        // chown drops security.capability: read it first (regular files only carry it).
        let capability = isFile ? readXattr(dirFD, name, "security.capability") : nil
        guard fchownat(dirFD, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw .startFailed(step: "chown \(path)", errno: errno)
        }
        if isLink { return }
        if st.st_mode & (S_ISUID | S_ISGID) != 0 {
            guard fchmodat(dirFD, name, st.st_mode & 0o7777, 0) == 0 else {
                throw .startFailed(step: "chmod \(path)", errno: errno)
            }
        }
        try shiftACLs(at: dirFD, name: name, path: path)
        if let capability, let rewritten = FileCapability.rebased(capability, rootID: capabilityRoot) {
            guard writeXattr(dirFD, name, "security.capability", rewritten) else {
                throw .startFailed(step: "set file capabilities of \(path)", errno: errno)
            }
        }
    }

    func shiftACLs(at dirFD: Int32, name: String, path: String) throws(RunnerError) {
        for key in ["system.posix_acl_access", "system.posix_acl_default"] {
            guard let value = readXattr(dirFD, name, key), let shifted = PosixACL.shifted(value, map: map), shifted != value else { continue }
            guard writeXattr(dirFD, name, key, shifted) else { throw .startFailed(step: "set ACL of \(path)", errno: errno) }
        }
    }

    /// Extended attribute of a directory entry through /proc/self/fd (the *at xattr calls are
    /// newer than this glibc); nil when absent.
    private func entryPath(_ dirFD: Int32, _ name: String) -> String {
        dirFD == AT_FDCWD ? name : "/proc/self/fd/\(dirFD)/\(name)"
    }

    func readXattr(_ dirFD: Int32, _ name: String, _ key: String) -> [UInt8]? {
        let path = entryPath(dirFD, name)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { lgetxattr(path, key, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return Array(buffer.prefix(n))
    }

    func writeXattr(_ dirFD: Int32, _ name: String, _ key: String, _ value: [UInt8]) -> Bool {
        let path = entryPath(dirFD, name)
        return value.withUnsafeBytes { lsetxattr(path, key, $0.baseAddress, $0.count, 0) } == 0
    }
}
