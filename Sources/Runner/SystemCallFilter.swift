/// systemd's system call groups and systemd-nspawn's default allow list, as values.
///
/// The group contents follow systemd 252 (`systemd-analyze syscall-filter` and the
/// "SystemCallFilter=" section of systemd.exec(5)); the default list follows nspawn's
/// nspawn-seccomp.c of the same release: the groups an OS container needs, some single calls, and
/// groups/calls allowed only when a capability is in the container's bounding set (setting the
/// clock needs CAP_SYS_TIME, loading modules CAP_SYS_MODULE, and so on — without the capability
/// the kernel would refuse anyway, the filter makes it a clean EPERM). Left out on purpose, as
/// nspawn does: @keyring (the kernel keyring is not namespaced), bpf, kexec, open_by_handle_at,
/// perf_event_open, @swap, @cpu-emulation, @obsolete, @pkey, fanotify, quotactl, lookup_dcookie,
/// nfsservctl.
public enum SystemCallFilter {
    /// Group name (with "@") → members: call names or other groups.
    static let groups: [String: [String]] = [
        "@default": [
            "arch_prctl", "brk", "cacheflush", "clock_getres", "clock_getres_time64", "clock_gettime",
            "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "execve", "exit", "exit_group",
            "futex", "futex_time64", "futex_waitv", "get_robust_list", "get_thread_area", "getegid",
            "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
            "getpgid", "getpgrp", "getpid", "getppid", "getrandom", "getresgid", "getresgid32",
            "getresuid", "getresuid32", "getrlimit", "getsid", "gettid", "gettimeofday", "getuid",
            "getuid32", "membarrier", "mmap", "mmap2", "mprotect", "munmap", "nanosleep", "pause",
            "prlimit64", "restart_syscall", "riscv_flush_icache", "riscv_hwprobe", "rseq", "rt_sigreturn",
            "sched_getaffinity", "sched_yield", "set_robust_list", "set_thread_area", "set_tid_address",
            "set_tls", "sigreturn", "time", "ugetrlimit", "uretprobe",
        ],
        "@aio": [
            "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup",
            "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
        ],
        "@basic-io": [
            "_llseek", "close", "close_range", "dup", "dup2", "dup3", "lseek", "pread64", "preadv",
            "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readv", "write", "writev",
        ],
        "@chown": ["chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32"],
        "@clock": ["adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday"],
        "@cpu-emulation": ["modify_ldt", "subpage_prot", "switch_endian", "vm86", "vm86old"],
        "@debug": [
            "lookup_dcookie", "perf_event_open", "pidfd_getfd", "ptrace", "rtas", "s390_runtime_instr",
            "sys_debug_setcontext",
        ],
        "@file-system": [
            "access", "chdir", "chmod", "close", "creat", "faccessat", "faccessat2", "fallocate", "fchdir",
            "fchmod", "fchmodat", "fchmodat2", "fcntl", "fcntl64", "fgetxattr", "flistxattr",
            "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
            "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "getxattr",
            "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "lgetxattr", "link",
            "linkat", "listxattr", "llistxattr", "lremovexattr", "lsetxattr", "lstat", "lstat64", "mkdir",
            "mkdirat", "mknod", "mknodat", "newfstatat", "oldfstat", "oldlstat", "oldstat", "open",
            "openat", "openat2", "readlink", "readlinkat", "removexattr", "rename", "renameat",
            "renameat2", "rmdir", "setxattr", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
            "symlinkat", "truncate", "truncate64", "unlink", "unlinkat", "utime", "utimensat",
            "utimensat_time64", "utimes",
        ],
        "@io-event": [
            "_newselect", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
            "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "poll", "ppoll",
            "ppoll_time64", "pselect6", "pselect6_time64", "select",
        ],
        "@ipc": [
            "ipc", "memfd_create", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
            "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
            "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "process_madvise", "process_vm_readv",
            "process_vm_writev", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat",
            "shmctl", "shmdt", "shmget",
        ],
        "@keyring": ["add_key", "keyctl", "request_key"],
        "@memlock": ["mlock", "mlock2", "mlockall", "munlock", "munlockall"],
        "@module": ["delete_module", "finit_module", "init_module"],
        "@mount": [
            "chroot", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr", "move_mount",
            "open_tree", "pivot_root", "umount", "umount2",
        ],
        "@network-io": [
            "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
            "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg",
            "sendto", "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
        ],
        "@obsolete": [
            "_sysctl", "afs_syscall", "bdflush", "break", "create_module", "ftime", "get_kernel_syms",
            "getpmsg", "gtty", "idle", "lock", "mpx", "prof", "profil", "putpmsg", "query_module",
            "security", "sgetmask", "ssetmask", "stime", "stty", "sysfs", "tuxcall", "ulimit", "uselib",
            "ustat", "vserver",
        ],
        "@pkey": ["pkey_alloc", "pkey_free", "pkey_mprotect"],
        "@privileged": [
            "@chown", "@clock", "@module", "@raw-io", "@reboot", "@swap", "_sysctl", "acct", "bpf",
            "capset", "chroot", "fanotify_init", "fanotify_mark", "nfsservctl", "open_by_handle_at",
            "pivot_root", "quotactl", "quotactl_fd", "setdomainname", "setfsuid", "setfsuid32",
            "setgroups", "setgroups32", "sethostname", "setresuid", "setresuid32", "setreuid",
            "setreuid32", "setuid", "setuid32", "vhangup",
        ],
        "@process": [
            "capget", "clone", "clone3", "execveat", "fork", "getrusage", "kill", "pidfd_open",
            "pidfd_send_signal", "prctl", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "setns", "swapcontext",
            "tgkill", "times", "tkill", "unshare", "vfork", "wait4", "waitid", "waitpid",
        ],
        "@raw-io": [
            "ioperm", "iopl", "pciconfig_iobase", "pciconfig_read", "pciconfig_write", "s390_pci_mmio_read",
            "s390_pci_mmio_write",
        ],
        "@reboot": ["kexec_file_load", "kexec_load", "reboot"],
        "@resources": [
            "ioprio_set", "mbind", "migrate_pages", "move_pages", "nice", "sched_setaffinity",
            "sched_setattr", "sched_setparam", "sched_setscheduler", "set_mempolicy",
            "set_mempolicy_home_node", "setpriority", "setrlimit",
        ],
        "@setuid": [
            "setgid", "setgid32", "setgroups", "setgroups32", "setregid", "setregid32", "setresgid",
            "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32",
        ],
        "@signal": [
            "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigsuspend", "rt_sigtimedwait",
            "rt_sigtimedwait_time64", "sigaction", "sigaltstack", "signal", "signalfd", "signalfd4",
            "sigpending", "sigprocmask", "sigsuspend",
        ],
        "@swap": ["swapoff", "swapon"],
        "@sync": ["fdatasync", "fsync", "msync", "sync", "sync_file_range", "sync_file_range2", "syncfs"],
        "@system-service": [
            "@aio", "@basic-io", "@chown", "@default", "@file-system", "@io-event", "@ipc", "@keyring",
            "@memlock", "@network-io", "@process", "@resources", "@setuid", "@signal", "@sync", "@timer",
            "arm_fadvise64_64", "capget", "capset", "copy_file_range", "fadvise64", "fadvise64_64", "flock",
            "get_mempolicy", "getcpu", "getpriority", "ioctl", "ioprio_get", "kcmp", "madvise", "mremap",
            "name_to_handle_at", "oldolduname", "olduname", "personality", "readahead", "readdir",
            "remap_file_pages", "sched_get_priority_max", "sched_get_priority_min", "sched_getattr",
            "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
            "sched_yield", "sendfile", "sendfile64", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
            "setpgid", "setsid", "splice", "sysinfo", "tee", "umask", "uname", "userfaultfd", "vmsplice",
        ],
        "@timer": [
            "alarm", "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun",
            "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
            "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
        ],
    ]

    /// "@known": every call the seccomp library knows for x86-64 or i386 (systemd's @known is the
    /// list its build knew; here the library that builds the filter is the one that matters).
    public static let knownGroup = "@known"

    /// One entry of the default allow list: a group or call, allowed when `capability` is nil or
    /// in the container's bounding set.
    struct DefaultEntry: Sendable {
        var name: String
        var capability: Int?
    }

    // Capability numbers (linux/capability.h) used by the default list.
    private static let capIPCLock = 14, capSysModule = 16, capSysRawIO = 17, capSysPtrace = 19,
        capSysPacct = 20, capSysBoot = 22, capSysTime = 25, capSysTTYConfig = 26, capSyslog = 34

    /// nspawn's default allow list (systemd 252 nspawn-seccomp.c). `seccomp` is on it because
    /// systemd-nspawn 252 allows it (measured on Debian 12: EINVAL for bad arguments, not EPERM),
    /// and systemd inside the container needs it for its units' SystemCallFilter=.
    static let defaultAllowList: [DefaultEntry] = {
        let always = [
            "@aio", "@basic-io", "@chown", "@default", "@file-system", "@io-event", "@ipc", "@mount",
            "@network-io", "@process", "@resources", "@setuid", "@signal", "@sync", "@timer",
            // Single calls in none of the groups above.
            "arm_fadvise64_64", "brk", "capget", "capset", "copy_file_range", "fadvise64", "fadvise64_64",
            "flock", "get_mempolicy", "getcpu", "getpriority", "ioctl", "ioprio_get", "kcmp", "madvise",
            "mincore", "mprotect", "mremap", "name_to_handle_at", "oldolduname", "olduname", "personality",
            "readahead", "readdir", "remap_file_pages", "sched_get_priority_max", "sched_get_priority_min",
            "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
            "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_yield", "seccomp", "sendfile",
            "sendfile64", "setdomainname", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "sethostname", "setpgid",
            "setsid", "splice", "sysinfo", "tee", "umask", "uname", "userfaultfd", "vmsplice",
        ].map { DefaultEntry(name: $0, capability: nil) }
        let gated: [(String, Int)] = [
            ("@clock", capSysTime), ("@module", capSysModule), ("@raw-io", capSysRawIO), ("@memlock", capIPCLock),
            ("acct", capSysPacct), ("process_vm_readv", capSysPtrace), ("process_vm_writev", capSysPtrace),
            ("ptrace", capSysPtrace), ("reboot", capSysBoot), ("syslog", capSyslog), ("vhangup", capSysTTYConfig),
        ]
        return always + gated.map { DefaultEntry(name: $0.0, capability: $0.1) }
    }()

    /// The names of all groups, "@known" included.
    public static var groupNames: [String] { (Array(groups.keys) + [knownGroup]).sorted() }

    /// The calls a group stands for, nested groups expanded; nil for an unknown group.
    public static func expand(group: String) -> Set<String>? {
        if group == knownGroup { return SeccompFilter.knownCalls }
        guard groups[group] != nil else { return nil }
        var result: Set<String> = []
        var pending = [group]
        var seen: Set<String> = []
        while let next = pending.popLast() {
            guard seen.insert(next).inserted, let members = groups[next] else { continue }
            for member in members {
                if member.hasPrefix("@") { pending.append(member) } else { result.insert(member) }
            }
        }
        return result
    }

    /// A call name or a group, expanded (unknown names are checked by the settings' `add`).
    static func expand(_ item: String) -> Set<String> {
        item.hasPrefix("@") ? (expand(group: item) ?? []) : [item]
    }

    /// The calls the default filter allows for a bounding set (bit N = capability N).
    public static func defaultAllowed(boundingSet: UInt64) -> Set<String> {
        var result: Set<String> = []
        for entry in defaultAllowList {
            if let capability = entry.capability, boundingSet & (1 << UInt64(capability)) == 0 { continue }
            result.formUnion(expand(entry.name))
        }
        return result
    }

    /// What the filter of a container allows: nspawn's default for its bounding set, plus the
    /// --system-call-filter= allow lists, minus the "~" deny lists (a call on both is denied, as
    /// systemd-nspawn(1) says).
    public static func allowed(_ settings: SystemCallFilterSettings, boundingSet: UInt64) -> Set<String> {
        var result = defaultAllowed(boundingSet: boundingSet)
        for item in settings.allow { result.formUnion(expand(item)) }
        for item in settings.deny { result.subtract(expand(item)) }
        return result
    }
}

/// The --system-call-filter= values of one container (also .nspawn's SystemCallFilter=): names
/// to add to the default allow list, and names to deny. Carried in the machine record so that
/// `imagectl shell` rebuilds the same filter.
public struct SystemCallFilterSettings: Sendable, Equatable, Codable {
    /// Call and group names added to the default allow list, in the order given.
    public private(set) var allow: [String] = []
    /// Call and group names denied (values that started with "~").
    public private(set) var deny: [String] = []

    public init() {}

    /// Adds one --system-call-filter= / SystemCallFilter= value: space-separated call names and
    /// @group names, all denied when the value starts with "~", else all allowed. An empty value
    /// adds nothing. Throws for a name that is neither a group nor a call the seccomp library
    /// knows (for any architecture).
    public mutating func add(_ text: String) throws(RunnerError) {
        var items = Substring(text)
        let negative = items.first == "~"
        if negative { items = items.dropFirst() }
        var names: [String] = []
        for word in items.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            let name = String(word)
            if name.hasPrefix("@") {
                guard SystemCallFilter.expand(group: name) != nil else {
                    throw .invalidOption(option: "--system-call-filter (unknown system call group)", value: name)
                }
            } else {
                guard SeccompFilter.isKnownCall(name) else {
                    throw .invalidOption(option: "--system-call-filter (unknown system call)", value: name)
                }
            }
            names.append(name)
        }
        if negative { deny += names } else { allow += names }
    }

    /// True when no value was given (the default filter).
    public var isEmpty: Bool { allow.isEmpty && deny.isEmpty }
}
