import CSeccomp
import Glibc

/// The default seccomp filter, built with libseccomp and exported as a classic BPF program that
/// the container child installs with prctl(PR_SET_SECCOMP) (the child may not allocate, so
/// libseccomp cannot run there).
///
/// It is a deny list on top of "allow": the calls systemd-nspawn never lets a container make and
/// that reach host-global kernel state (kernel keyring, BPF, kexec, open_by_handle_at, perf
/// events, swap) fail with EPERM, and so do the TIOCSTI/TIOCLINUX ioctls that push input into a
/// terminal. nspawn's own filter is an allow list of system call groups; that is not built here.
/// The rules are added for x86-64, i386 and x32 alike, so a 32-bit entry point cannot bypass them.
enum SeccompFilter {
    static let deniedCalls = [
        "add_key", "request_key", "keyctl", "bpf", "kexec_load", "kexec_file_load",
        "open_by_handle_at", "perf_event_open", "swapon", "swapoff",
    ]
    static let deniedIoctls: [UInt64] = [UInt64(TIOCSTI), UInt64(TIOCLINUX)]

    /// SCMP_ACT_ERRNO(x) (a function-like macro Swift does not import).
    static func actionErrno(_ code: Int32) -> UInt32 { 0x0005_0000 | (UInt32(code) & 0xffff) }

    /// The BPF program (struct sock_filter array) as bytes.
    static func program() throws -> [UInt8] {
        guard let context = seccomp_init(UInt32(SCMP_ACT_ALLOW)) else { throw RunnerError.seccomp("seccomp_init failed") }
        defer { seccomp_release(context) }
        for arch in ["x86", "x32"] {
            let token = seccomp_arch_resolve_name(arch)
            guard token != 0 else { continue }
            let r = seccomp_arch_add(context, token)
            if r != 0 && r != -EEXIST { throw RunnerError.seccomp("seccomp_arch_add \(arch): \(RunnerError.errnoText(-r))") }
        }
        for name in deniedCalls {
            let number = seccomp_syscall_resolve_name(name)
            guard number != __NR_SCMP_ERROR else { continue }
            let r = seccomp_rule_add_array(context, actionErrno(EPERM), number, 0, nil)
            if r != 0 { throw RunnerError.seccomp("rule for \(name): \(RunnerError.errnoText(-r))") }
        }
        let ioctl = seccomp_syscall_resolve_name("ioctl")
        for request in deniedIoctls {
            // The request argument is an int in the kernel: compare only its low 32 bits.
            var comparison = scmp_arg_cmp(arg: 1, op: SCMP_CMP_MASKED_EQ, datum_a: 0xffff_ffff, datum_b: request)
            let r = seccomp_rule_add_array(context, actionErrno(EPERM), ioctl, 1, &comparison)
            if r != 0 { throw RunnerError.seccomp("ioctl rule: \(RunnerError.errnoText(-r))") }
        }
        // seccomp_export_bpf writes to a file descriptor: a pipe, read back here. The program is a
        // few hundred bytes, far below the 64 KiB a pipe holds, so the write cannot block.
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw RunnerError.seccomp("pipe: \(RunnerError.errnoText(errno))") }
        defer { close(fds[0]) }
        let r = seccomp_export_bpf(context, fds[1])
        close(fds[1])
        if r != 0 { throw RunnerError.seccomp("seccomp_export_bpf: \(RunnerError.errnoText(-r))") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw RunnerError.seccomp("reading the exported program: \(RunnerError.errnoText(errno))") }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        guard !bytes.isEmpty, bytes.count % 8 == 0, bytes.count / 8 <= 4096 else { throw RunnerError.seccomp("unexpected program size \(bytes.count)") }
        return bytes
    }
}
