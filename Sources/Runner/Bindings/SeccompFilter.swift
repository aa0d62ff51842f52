import CSeccomp
import Glibc

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
    static func program(_ settings: SystemCallFilterSettings = SystemCallFilterSettings(), boundingSet: UInt64) throws -> [UInt8] {
        try argumentChecks() + allowList(SystemCallFilter.allowed(settings, boundingSet: boundingSet))
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
