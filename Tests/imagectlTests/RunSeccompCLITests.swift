import Foundation
import Testing
import TestSupport

/// The seccomp filter of `imagectl run` (nspawn's allow list, `--system-call-filter=`), checked
/// from inside: perl's syscall() in the debian-tree fixture makes any system call and prints the
/// errno, busybox covers `imagectl shell`, a small static program the three x86 entry points.
@Suite("imagectl run seccomp", .serialized)
struct RunSeccompCLITests {
    /// name → perl syscall() arguments. Each would fail differently (or succeed) without the filter.
    static let probes: [(String, String)] = [
        ("getpid", "39"),
        ("add_key", #"248, "user", "probe", "x", 1, -2"#),       // succeeds on the host
        ("keyctl", "250, 0, -2, 1"),                              // KEYCTL_GET_KEYRING_ID
        ("bpf", "321, 999, 0, 0"),                                // EINVAL on the host
        ("perf_event_open", "298, 0, 0, -1, -1, 0"),              // EFAULT on the host
        ("open_by_handle_at", "304, -1, 0, 0"),                   // EFAULT on the host
        ("swapon", #"167, "/no-such-swap", 0"#),                  // ENOENT on the host
        ("kexec_load", "246, 0, 0, 0, 0xffffffff"),
        ("init_module", #"175, 0, 0, """#),
        ("adjtimex", #"159, "\0" x 208"#),                        // a read: works on the host
        ("sethostname", #"170, "probe", 5"#),
        ("clone3", "435, 0, 0"),                                  // EINVAL: allowed, bad arguments
        ("mount", #"165, "", "", "", 0xffffffff, 0"#),           // ENOENT: allowed
        ("seccomp", "317, 255, 0, 0"),                            // EINVAL: allowed
        ("mseal", "462, 0, 0, 0"),                                // newer than libseccomp 2.5.4
        ("audit_socket", "41, 16, 3, 9"),                         // AF_NETLINK, SOCK_RAW, NETLINK_AUDIT
        ("tiocsti", #"16, 0, 0x5412, "x""#),                      // ENOTTY on the host (stdin is no tty)
        ("tioclinux", #"16, 0, 0x541c, "\0""#),
    ]

    static var perlScript: String {
        probes.map { name, arguments in
            // Arguments copied into variables: perl's syscall() may write through string arguments
            // and refuses literal constants.
            #"($n, @a) = (\#(arguments)); $! = 0; $r = syscall($n, @a); printf "\#(name)=%d\n", $r == -1 ? $! + 0 : 0;"#
        }.joined(separator: " ")
    }

    static func errnos(_ output: String) -> [String: Int] {
        var result: [String: Int] = [:]
        for line in output.replacingOccurrences(of: "\r", with: "").split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = Int(parts[1]) { result[String(parts[0])] = value }
        }
        return result
    }

    /// `imagectl run -q -x -D debian-tree -M NAME OPTIONS perl -e SCRIPT` with a private registry.
    func debian(_ name: String, _ options: [String], script: String = RunSeccompCLITests.perlScript) throws -> Tool.Result {
        let runtime = try TemporaryDirectory(prefix: "seccomp-runtime")
        return try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", name] + options + ["perl", "-e", script],
                                environment: ["IMAGECTL_RUNTIME_DIR": runtime.path])
    }

    @Test func defaultAllowListDeniesWhatNspawnDenies() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let r = try debian("seccomp-default", [])
        #expect(r.status == 0, "\(r.stderr)")
        let got = Self.errnos(r.stdout)
        let (EPERM, ENOENT, EINVAL, ENOSYS, EAFNOSUPPORT) = (1, 2, 22, 38, 97)
        let expected: [String: Int] = [
            "getpid": 0, "add_key": EPERM, "keyctl": EPERM, "bpf": EPERM, "perf_event_open": EPERM,
            "open_by_handle_at": EPERM, "swapon": EPERM, "kexec_load": EPERM, "init_module": EPERM,
            // @clock needs CAP_SYS_TIME in the bounding set, which nspawn's default lacks.
            "adjtimex": EPERM, "sethostname": 0, "clone3": EINVAL, "mount": ENOENT, "seccomp": EINVAL,
            // Unknown to the filter's library: ENOSYS, so that libc falls back to an older call.
            "mseal": ENOSYS, "audit_socket": EAFNOSUPPORT, "tiocsti": EPERM, "tioclinux": EPERM,
        ]
        #expect(got == expected)

        // The same calls outside any container fail differently (or work): the errors above are
        // the filter's. (chroot: perl from the fixture; each call has harmless arguments.)
        let host = Self.errnos(try Tool.run("chroot", [Fixtures.path("debian-tree") ?? "", "perl", "-e", Self.perlScript]).stdout)
        for name in ["add_key", "bpf", "perf_event_open", "open_by_handle_at", "swapon", "adjtimex", "tiocsti"] {
            #expect(host[name] != nil && host[name] != EPERM, "\(name) on the host: \(String(describing: host[name]))")
        }

        // A capability in the bounding set opens its group: adjtimex with CAP_SYS_TIME.
        let time = Self.errnos(try debian("seccomp-time", ["--capability=CAP_SYS_TIME"]).stdout)
        #expect(time["adjtimex"] == 0)
        #expect(time["add_key"] == EPERM)
    }

    @Test func sameVerdictsAsSystemdNspawn() throws {
        try Privileged.require(.root, .fixture("debian-tree"), .tool("systemd-nspawn"))
        let scratch = try TemporaryDirectory(prefix: "seccomp-nspawn")
        let tree = scratch.appending("tree")
        #expect(try Tool.run("cp", ["-a", Fixtures.path("debian-tree") ?? "", tree]).status == 0)
        let peer = try Tool.run("systemd-nspawn", ["-q", "--register=no", "--keep-unit", "-D", tree, "perl", "-e", Self.perlScript])
        let theirs = Self.errnos(peer.stdout)
        let ours = Self.errnos(try debian("seccomp-peer", []).stdout)
        #expect(theirs.count == Self.probes.count, "\(peer.stdout) \(peer.stderr)")
        // nspawn leaves TIOCSTI/TIOCLINUX alone (its payload has a pty of its own); imagectl denies
        // them (SECURITY 21).
        for (name, _) in Self.probes where !name.hasPrefix("tioc") {
            #expect(ours[name] == theirs[name], "\(name): imagectl \(String(describing: ours[name])), nspawn \(String(describing: theirs[name]))")
        }
    }

    /// The compiled filter is kept in $IMAGECTL_RUNTIME_DIR/seccomp: a second start with the same
    /// settings reuses the file (it is not written again), and a damaged file is replaced, never
    /// obeyed: the filter still denies what it must.
    @Test func compiledFilterIsCachedAndADamagedCacheIsRebuilt() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let runtime = try TemporaryDirectory(prefix: "seccomp-runtime")
        let script = Self.probes.filter { ["getpid", "kexec_load", "add_key"].contains($0.0) }.map { name, arguments in
            #"($n, @a) = (\#(arguments)); $! = 0; $r = syscall($n, @a); printf "\#(name)=%d\n", $r == -1 ? $! + 0 : 0;"#
        }.joined(separator: " ")
        func run(_ name: String) throws -> [String: Int] {
            let r = try Imagectl.run(["run", "-q", "-x", "-D", Fixtures.path("debian-tree") ?? "", "-M", name, "perl", "-e", script],
                                     environment: ["IMAGECTL_RUNTIME_DIR": runtime.path])
            #expect(r.status == 0, "\(r.stderr)")
            return Self.errnos(r.stdout)
        }
        let verdicts: [String: Int] = ["getpid": 0, "kexec_load": 1, "add_key": 1]
        #expect(try run("seccomp-cache-1") == verdicts)
        let directory = runtime.appending("seccomp")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".bpf") }
        try #require(files.count == 1)
        let path = directory + "/" + files[0]
        var before = stat()
        #expect(stat(path, &before) == 0)
        #expect(before.st_mode & 0o777 == 0o600)

        #expect(try run("seccomp-cache-2") == verdicts)
        var after = stat()
        #expect(stat(path, &after) == 0)
        #expect(after.st_ino == before.st_ino, "a cache hit does not write the file again")

        // Damage it: the programs' first instruction count becomes 0 (an empty program).
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let keySize = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
        bytes.replaceSubrange((4 + keySize)..<(8 + keySize), with: [0, 0, 0, 0])
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try run("seccomp-cache-3") == verdicts)
        var rebuilt = stat()
        #expect(stat(path, &rebuilt) == 0)
        #expect(rebuilt.st_ino != before.st_ino, "the damaged file was replaced")
    }

    @Test func denyListMakesAllowedCallsFail() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let r = try debian("seccomp-deny", ["--system-call-filter=~sethostname @mount", "--capability=CAP_SYS_TIME", "--system-call-filter=~@clock"])
        #expect(r.status == 0, "\(r.stderr)")
        let got = Self.errnos(r.stdout)
        #expect(got["sethostname"] == 1)
        #expect(got["mount"] == 1)
        #expect(got["adjtimex"] == 1)
        #expect(got["getpid"] == 0)
        #expect(got["clone3"] == 22)
    }

    @Test func allowListAddsCallsTheDefaultDenies() throws {
        try Privileged.require(.root, .fixture("debian-tree"))
        let script = #"""
            @a = ("user", "probe", "x", 1, -2); $a = syscall(248, @a); print $a > 0 ? "add_key serial\n" : "add_key failed $!\n";
            $k = syscall(250, 0, -2, 1); print $k > 0 ? "keyring id\n" : "keyctl failed $!\n";
            """#
        let added = try debian("seccomp-add", ["--system-call-filter=add_key"], script: script)
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout == "add_key serial\nkeyctl failed Operation not permitted\n")
        let group = try debian("seccomp-group", ["--system-call-filter=@keyring"], script: script)
        #expect(group.stdout == "add_key serial\nkeyring id\n")
        // A call both added and denied is denied.
        let both = try debian("seccomp-both", ["--system-call-filter=~add_key", "--system-call-filter=@keyring"], script: script)
        #expect(both.stdout == "add_key failed Operation not permitted\nkeyring id\n")
    }

    @Test func unknownNamesAreUsageErrors() throws {
        for value in ["nosuchcall", "~@nosuchgroup", "read nosuchcall", "@"] {
            let r = try Imagectl.run(["run", "-D", "/tmp", "--system-call-filter=\(value)", "true"])
            #expect(r.status == 2, "\(value)")
            #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(value): \(r.stderr)")
        }
        let help = try Imagectl.run(["run", "--help"])
        #expect(help.stdout.contains("--system-call-filter"))
        #expect(help.stdout.contains("@clock"))
    }

    @Test func shellGetsTheContainersFilter() throws {
        try Privileged.require(.root, .fixture("busybox-tree"))
        let setup = try MachineCLITests.setUp(name: "scshell")
        let filtered = try MachineCLITests.Background(["run", "-q", "-D", setup.tree, "--system-call-filter=~sethostname", "sleep", "60"],
                                                      environment: setup.environment, scratch: setup.scratch)
        _ = try #require(try MachineCLITests.waitForMachine("scshell", setup, background: filtered), "not registered: \(filtered.text)")
        let denied = try Imagectl.run(["shell", "scshell", "hostname", "renamed"], environment: setup.environment)
        #expect(denied.status != 0)
        #expect(denied.stderr.contains("Operation not permitted"), "\(denied.stderr)")
        // The default part of the filter holds in the shell too.
        let swap = try Imagectl.run(["shell", "scshell", "busybox", "swapoff", "/no-such-swap"], environment: setup.environment)
        #expect(swap.stderr.contains("Operation not permitted"), "\(swap.stderr)")
        #expect(try Imagectl.run(["stop", "scshell"], environment: setup.environment).status == 0)
        _ = filtered.wait(seconds: 20)

        // Without the option the same shell command works (it renames the container only).
        let plain = try MachineCLITests.Background(["run", "-q", "-D", setup.tree, "-M", "scshell2", "sleep", "60"],
                                                   environment: setup.environment, scratch: setup.scratch)
        _ = try #require(try MachineCLITests.waitForMachine("scshell2", setup, background: plain), "not registered: \(plain.text)")
        let allowed = try Imagectl.run(["shell", "scshell2", "sh", "-c", "hostname renamed && hostname"], environment: setup.environment)
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stdout == "renamed\n")
        #expect(try Imagectl.run(["stop", "scshell2"], environment: setup.environment).status == 0)
        _ = plain.wait(seconds: 20)
    }

    /// A static program without libc that makes add_key, swapon and getpid through the x86-64
    /// `syscall`, the i386 `int $0x80` and the x32 (bit 30) entry points.
    static let entryPointProbe = #"""
        static long sys64(long n, long a, long b, long c, long d, long e) {
            long r;
            register long r10 __asm__("r10") = d;
            register long r8 __asm__("r8") = e;
            __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
            return r;
        }
        static long sys32(long n, long a, long b, long c, long d, long e) {
            long r;
            __asm__ volatile("push %%rbx\n\tmov %2, %%rbx\n\tint $0x80\n\tpop %%rbx" : "=a"(r) : "a"(n), "r"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
            return (int)r;
        }
        static void put(const char *name, long r) {
            char buf[64];
            int n = 0;
            while (name[n]) { buf[n] = name[n]; n++; }
            buf[n++] = '=';
            long e = r < 0 && r > -4096 ? -r : 0;
            char digits[8];
            int k = 0;
            do { digits[k++] = '0' + e % 10; e /= 10; } while (e);
            while (k) buf[n++] = digits[--k];
            buf[n++] = '\n';
            sys64(1, 1, (long)buf, n, 0, 0);
        }
        static const char type[] = "user", desc[] = "probe", payload[] = "x", nofile[] = "/no-such-swap";
        void _start(void) {
            const long x32 = 0x40000000;
            put("x86_64_getpid", sys64(39, 0, 0, 0, 0, 0));
            put("x86_64_add_key", sys64(248, (long)type, (long)desc, (long)payload, 1, -2));
            put("x86_64_swapon", sys64(167, (long)nofile, 0, 0, 0, 0));
            put("i386_getpid", sys32(20, 0, 0, 0, 0, 0));
            put("i386_add_key", sys32(286, (long)type, (long)desc, (long)payload, 1, -2));
            put("i386_swapon", sys32(87, (long)nofile, 0, 0, 0, 0));
            put("x32_add_key", sys64(x32 | 248, (long)type, (long)desc, (long)payload, 1, -2));
            put("x32_swapon", sys64(x32 | 167, (long)nofile, 0, 0, 0, 0));
            sys64(60, 0, 0, 0, 0, 0);
        }
        """#

    @Test func thirtyTwoBitEntryPointsAreFilteredToo() throws {
        try Privileged.require(.root, .fixture("busybox-tree"), .tool("gcc"))
        let setup = try MachineCLITests.setUp(name: "scabi")
        let source = setup.scratch.appending("abi.c")
        try Self.entryPointProbe.write(toFile: source, atomically: true, encoding: .utf8)
        let build = try Tool.run("gcc", ["-static", "-nostdlib", "-no-pie", "-O1", "-fno-stack-protector", "-o", setup.tree + "/abi", source])
        #expect(build.status == 0, "\(build.stderr)")
        // Outside: add_key works and swapon says ENOENT, for 64 and 32 bits (x32 may be absent: ENOSYS).
        let host = Self.errnos(try Tool.run(setup.tree + "/abi", []).stdout)
        #expect(host["x86_64_add_key"] == 0 && host["i386_add_key"] == 0 && host["i386_swapon"] == 2, "\(host)")
        let r = try Imagectl.run(["run", "-q", "-D", setup.tree, "/abi"], environment: setup.environment)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(Self.errnos(r.stdout) == [
            "x86_64_getpid": 0, "x86_64_add_key": 1, "x86_64_swapon": 1,
            "i386_getpid": 0, "i386_add_key": 1, "i386_swapon": 1,
            "x32_add_key": 1, "x32_swapon": 1,
        ])
    }
}
