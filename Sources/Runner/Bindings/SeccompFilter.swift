import CSeccomp
import Foundation
import Glibc
import Machines

/// The container's seccomp filters, built with libseccomp and exported as classic BPF programs
/// that the container child (and `imagectl shell`'s helper) installs with prctl(PR_SET_SECCOMP):
/// the child may not allocate, so libseccomp cannot run there.
///
/// Two programs, installed in this order (the kernel runs both and takes the strictest answer):
///
/// 1. Argument checks on an "allow" default: the TIOCSTI/TIOCLINUX ioctls that push input into a
///    terminal fail with EPERM, and socket(AF_NETLINK, *, NETLINK_AUDIT) with EAFNOSUPPORT (as
///    nspawn: audit does not work in a container, and that errno tells audit userspace "no audit
///    in this kernel"). libseccomp drops an argument rule for a call that also has a plain rule in
///    the same filter, so these cannot live in the allow list.
/// 2. nspawn's allow list (`SystemCallFilter.allowed`): listed calls are allowed, every other call
///    libseccomp knows fails with EPERM, and calls it does not know (newer than the library) fail
///    with ENOSYS, as in nspawn since systemd 247 — so libc falls back to an older call instead
///    of taking EPERM as a verdict.
///
/// Rules are added for x86-64, i386 and x32 alike, so a 32-bit entry point cannot bypass them; a
/// name a given architecture lacks is skipped there (libseccomp resolves names per architecture).
enum SeccompFilter {
    static let deniedIoctls: [UInt64] = [UInt64(TIOCSTI), UInt64(TIOCLINUX)]

    /// SCMP_ACT_ERRNO(x) (a function-like macro Swift does not import).
    static func actionErrno(_ code: Int32) -> UInt32 { 0x0005_0000 | (UInt32(code) & 0xffff) }

    /// Whether libseccomp knows a call of this name for some architecture.
    static func isKnownCall(_ name: String) -> Bool {
        seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR
    }

    /// Every call name libseccomp knows for x86-64 and i386 (x32 uses x86-64's names).
    static let knownCalls: Set<String> = {
        var names: Set<String> = []
        for arch in [seccomp_arch_resolve_name("x86_64"), seccomp_arch_resolve_name("x86")] where arch != 0 {
            // Both tables end below 1024 (x86-64 is near 460 in 2025).
            for number in Int32(0)..<1024 {
                guard let name = seccomp_syscall_resolve_num_arch(arch, number) else { continue }
                names.insert(String(cString: name))
                free(name)
            }
        }
        return names
    }()

    /// The programs for a container with this bounding set (bit N = capability N), in the format
    /// img_child_install_seccomp reads: per program a UInt32 instruction count, then the code.
    /// Served from `SeccompProgramCache` when an earlier start built the same programs.
    static func program(_ settings: SystemCallFilterSettings = SystemCallFilterSettings(), boundingSet: UInt64) throws -> [UInt8] {
        let allowed = SystemCallFilter.allowed(settings, boundingSet: boundingSet)
        let key = SeccompProgramCache.key(allowed: allowed)
        if let cached = SeccompProgramCache.load(key: key) { return cached }
        let programs = try argumentChecks() + allowList(allowed)
        SeccompProgramCache.store(programs, key: key)
        return programs
    }

    /// Program 1: the ioctl and audit socket checks.
    static func argumentChecks() throws -> [UInt8] {
        let context = try makeContext(defaultAction: UInt32(SCMP_ACT_ALLOW))
        defer { seccomp_release(context) }
        let ioctl = seccomp_syscall_resolve_name("ioctl")
        for request in deniedIoctls {
            // The request argument is an int in the kernel: compare only its low 32 bits.
            var comparison = scmp_arg_cmp(arg: 1, op: SCMP_CMP_MASKED_EQ, datum_a: 0xffff_ffff, datum_b: request)
            let r = seccomp_rule_add_array(context, actionErrno(EPERM), ioctl, 1, &comparison)
            if r != 0 { throw RunnerError.seccomp("ioctl rule: \(RunnerError.errnoText(-r))") }
        }
        var audit = [
            scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: UInt64(AF_NETLINK), datum_b: 0),
            scmp_arg_cmp(arg: 2, op: SCMP_CMP_EQ, datum_a: 9 /* NETLINK_AUDIT */, datum_b: 0),
        ]
        // nspawn ignores a failure here too: the rule is a convenience for audit userspace.
        _ = seccomp_rule_add_array(context, actionErrno(EAFNOSUPPORT), seccomp_syscall_resolve_name("socket"), 2, &audit)
        return try export(context)
    }

    /// Program 2: allow `allowed`, EPERM for the other known calls, ENOSYS for the rest.
    static func allowList(_ allowed: Set<String>) throws -> [UInt8] {
        let context = try makeContext(defaultAction: actionErrno(ENOSYS))
        defer { seccomp_release(context) }
        // Several hundred rules per architecture: libseccomp's binary tree keeps the program short
        // and the lookup logarithmic (nspawn turns it on for the same reason).
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for name in allowed.sorted() {
            try addRule(context, action: UInt32(SCMP_ACT_ALLOW), name: name)
        }
        for name in knownCalls.subtracting(allowed).sorted() {
            try addRule(context, action: actionErrno(EPERM), name: name)
        }
        return try export(context)
    }

    private static func makeContext(defaultAction: UInt32) throws -> scmp_filter_ctx {
        guard let context = seccomp_init(defaultAction) else { throw RunnerError.seccomp("seccomp_init failed") }
        for arch in ["x86", "x32"] {
            let token = seccomp_arch_resolve_name(arch)
            guard token != 0 else { continue }
            let r = seccomp_arch_add(context, token)
            if r != 0 && r != -EEXIST {
                seccomp_release(context)
                throw RunnerError.seccomp("seccomp_arch_add \(arch): \(RunnerError.errnoText(-r))")
            }
        }
        return context
    }

    /// One rule for all architectures of the context. A name libseccomp does not know is skipped
    /// (the call is newer than the library: it meets the ENOSYS default); a name some
    /// architecture lacks is left out of that architecture by libseccomp itself.
    private static func addRule(_ context: scmp_filter_ctx, action: UInt32, name: String) throws {
        let number = seccomp_syscall_resolve_name(name)
        guard number != __NR_SCMP_ERROR else { return }
        let r = seccomp_rule_add_array(context, action, number, 0, nil)
        // EEXIST: the same call under another name (e.g. a 32-bit alias) already has this rule.
        if r != 0 && r != -EEXIST { throw RunnerError.seccomp("rule for \(name): \(RunnerError.errnoText(-r))") }
    }

    /// The context as a length-prefixed BPF program. seccomp_export_bpf writes to a file
    /// descriptor: a pipe, read back here. The kernel takes at most 4096 instructions (32 KiB),
    /// half of what a pipe holds; the write end is non-blocking so that a larger program fails
    /// the export (EAGAIN) instead of hanging.
    private static func export(_ context: scmp_filter_ctx) throws -> [UInt8] {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw RunnerError.seccomp("pipe: \(RunnerError.errnoText(errno))") }
        defer { close(fds[0]) }
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        let r = seccomp_export_bpf(context, fds[1])
        close(fds[1])
        if r != 0 { throw RunnerError.seccomp("seccomp_export_bpf: \(RunnerError.errnoText(-r))") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw RunnerError.seccomp("reading the exported program: \(RunnerError.errnoText(errno))") }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        // BPF_MAXINSNS: the kernel refuses longer programs.
        guard !bytes.isEmpty, bytes.count % 8 == 0, bytes.count / 8 <= 4096 else {
            throw RunnerError.seccomp("unexpected program size \(bytes.count) bytes")
        }
        var count = UInt32(bytes.count / 8)
        return withUnsafeBytes(of: &count) { Array($0) } + bytes
    }
}

/// Compiled filters kept between starts. Building the allow list is about 55 ms of libseccomp
/// work (hundreds of rules for three architectures, then its binary-tree pass): more than all
/// the rest of a container start. The programs depend only on the allowed names, the libseccomp
/// version and imagectl's own code, so they are stored in `$IMAGECTL_RUNTIME_DIR/seccomp` (default
/// /run/imagectl/seccomp: tmpfs, root's, gone at reboot) and reused.
///
/// A file holds its whole key followed by the programs, and is used only when that key matches
/// exactly (its name is just a hash of the key), it is a regular file owned by this user that
/// no one else can write, and the programs are well formed. Anything else means "build again";
/// failing to store is not an error (the cache only saves time).
///
///     +-------------+-----------+---------------------------------------------+
///     | u32 keySize | key bytes | programs (u32 count + count*8 bytes, twice)  |
///     +-------------+-----------+---------------------------------------------+
enum SeccompProgramCache {
    /// Largest file read back: a key of a few KiB plus two programs of at most 4096 instructions.
    static let maximumSize = 256 << 10

    static var directory: String {
        RuntimeDirectory.path + "/seccomp"
    }

    /// What the programs are made of: a format tag, the libseccomp version, the running imagectl
    /// executable (device, inode, size, mtime: a rebuilt or upgraded imagectl may have other
    /// tables) and the sorted allowed names.
    static func key(allowed: Set<String>) -> String {
        var text = "imagectl seccomp programs v1\n"
        if let version = seccomp_version() {
            text += "libseccomp \(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)\n"
        }
        var status = stat()
        if stat("/proc/self/exe", &status) == 0 {
            text += "exe \(status.st_dev):\(status.st_ino):\(status.st_size):\(status.st_mtim.tv_sec).\(status.st_mtim.tv_nsec)\n"
        }
        return text + allowed.sorted().joined(separator: " ") + "\n"
    }

    /// FNV-1a (64 bit) of the key, as the file name; a collision only costs a rebuild, since the
    /// file's own key is compared in full.
    static func fileName(_ key: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + ".bpf"
    }

    static func load(key: String, directory: String = directory) -> [UInt8]? {
        let fd = open(directory + "/" + fileName(key), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_uid == geteuid(),
              status.st_mode & 0o022 == 0, status.st_size > 4, status.st_size <= maximumSize else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            filled += n
        }
        let keyBytes = Array(key.utf8)
        guard readUInt32(bytes, at: 0) == UInt32(keyBytes.count), bytes.count >= 4 + keyBytes.count,
              bytes[4..<(4 + keyBytes.count)].elementsEqual(keyBytes) else { return nil }
        let programs = Array(bytes[(4 + keyBytes.count)...])
        return isWellFormed(programs) ? programs : nil
    }

    /// Two length-prefixed programs of 1...4096 instructions each, nothing after them.
    static func isWellFormed(_ programs: [UInt8]) -> Bool {
        var offset = 0
        for _ in 0..<2 {
            guard let count = readUInt32(programs, at: offset), count >= 1, count <= 4096 else { return false }
            offset += 4 + Int(count) * 8
            guard offset <= programs.count else { return false }
        }
        return offset == programs.count
    }

    static func store(_ programs: [UInt8], key: String, directory: String = directory) {
        let base = (directory as NSString).deletingLastPathComponent
        _ = mkdir(base, 0o755)
        _ = mkdir(directory, 0o700)
        let keyBytes = Array(key.utf8)
        var size = UInt32(keyBytes.count)
        let contents = withUnsafeBytes(of: &size) { Array($0) } + keyBytes + programs
        let temporary = directory + "/.tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        var written = 0
        while written < contents.count {
            let n = contents.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            written += n
        }
        close(fd)
        // rename() replaces atomically: a concurrent start reads the old file or the new one.
        if written != contents.count || rename(temporary, directory + "/" + fileName(key)) != 0 { unlink(temporary) }
    }

    private static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= bytes.count else { return nil }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }
}
