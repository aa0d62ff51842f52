import Foundation
import Testing
@testable import Runner

@Suite("System call filter")
struct SystemCallFilterTests {
    static let nspawnDefault = Capability.mask(Capability.nspawnDefault)

    static func capability(_ name: String) throws -> UInt64 {
        Capability.mask([try #require(Capability(name: name))])
    }

    @Test func groupsExpandNestedGroups() throws {
        let service = try #require(SystemCallFilter.expand(group: "@system-service"))
        // Members of the nested @default, @keyring and @file-system, and single members.
        for name in ["execve", "exit_group", "add_key", "openat", "ioctl", "uname"] { #expect(service.contains(name)) }
        #expect(!service.contains("mount"))
        let privileged = try #require(SystemCallFilter.expand(group: "@privileged"))
        for name in ["clock_settime", "init_module", "kexec_load", "swapon", "chown", "iopl", "bpf"] { #expect(privileged.contains(name)) }
        #expect(SystemCallFilter.expand(group: "@clock") == ["adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64", "settimeofday"])
        #expect(SystemCallFilter.expand(group: "@nosuchgroup") == nil)
        #expect(SystemCallFilter.expand(group: "clock") == nil)
        // Every group a group names exists.
        for (group, members) in SystemCallFilter.groups {
            #expect(group.hasPrefix("@"))
            for member in members where member.hasPrefix("@") { #expect(SystemCallFilter.groups[member] != nil, "\(group) names \(member)") }
        }
        // @known comes from libseccomp: x86-64 and i386 names.
        let known = try #require(SystemCallFilter.expand(group: "@known"))
        for name in ["read", "openat", "mmap2", "socketcall", "kexec_load", "clone3"] { #expect(known.contains(name)) }
        #expect(!known.contains("nosuchcall"))
    }

    @Test func defaultAllowListIsNspawns() throws {
        let allowed = SystemCallFilter.defaultAllowed(boundingSet: Self.nspawnDefault)
        // What systemd needs to boot, and calls outside the groups that nspawn lists one by one.
        for name in ["execve", "openat", "clone3", "name_to_handle_at", "mount", "pivot_root", "setns", "unshare",
                     "sethostname", "ioctl", "getrandom", "io_uring_setup", "chown", "setresuid",
                     "memfd_create", "timerfd_create", "socket", "mincore", "userfaultfd"] {
            #expect(allowed.contains(name), "\(name) should be allowed")
        }
        // Capability-gated calls whose capability is in nspawn's default bounding set.
        for name in ["reboot", "ptrace", "process_vm_readv", "vhangup"] { #expect(allowed.contains(name), "\(name)") }
        // Left out by nspawn, or gated on a capability nspawn drops.
        for name in ["add_key", "keyctl", "request_key", "bpf", "kexec_load", "kexec_file_load", "open_by_handle_at",
                     "perf_event_open", "swapon", "swapoff", "clock_settime", "settimeofday", "init_module",
                     "finit_module", "iopl", "mlock", "mlockall", "acct", "syslog", "modify_ldt", "pkey_alloc",
                     "fanotify_init", "quotactl", "lookup_dcookie", "_sysctl", "uselib", "pidfd_getfd"] {
            #expect(!allowed.contains(name), "\(name) should be denied")
        }
    }

    @Test func capabilityGatedCallsFollowTheBoundingSet() throws {
        let withTime = SystemCallFilter.defaultAllowed(boundingSet: Self.nspawnDefault | (try Self.capability("SYS_TIME")))
        #expect(withTime.isSuperset(of: ["clock_settime", "settimeofday", "adjtimex"]))
        let withModule = SystemCallFilter.defaultAllowed(boundingSet: try Self.capability("SYS_MODULE"))
        #expect(withModule.isSuperset(of: ["init_module", "finit_module", "delete_module"]))
        let withLock = SystemCallFilter.defaultAllowed(boundingSet: try Self.capability("IPC_LOCK"))
        #expect(withLock.isSuperset(of: ["mlock", "mlockall", "munlock"]))
        // An empty bounding set: no reboot, ptrace, vhangup; the ungated groups stay (also
        // process_vm_readv/writev, which nspawn gates on CAP_SYS_PTRACE but @ipc holds anyway).
        let none = SystemCallFilter.defaultAllowed(boundingSet: 0)
        for name in ["reboot", "ptrace", "vhangup", "acct", "syslog"] {
            let allowed = none.contains(name)
            #expect(!allowed, "\(name)")
        }
        #expect(none.isSuperset(of: ["execve", "mount", "read"]))
    }

    @Test func valuesAddOrDenyAndDenyWins() throws {
        var settings = SystemCallFilterSettings()
        #expect(settings.isEmpty)
        try settings.add("add_key @keyring")
        try settings.add("~@clock sethostname")
        try settings.add("")
        #expect(settings.allow == ["add_key", "@keyring"])
        #expect(settings.deny == ["@clock", "sethostname"])
        var allowed = SystemCallFilter.allowed(settings, boundingSet: Self.nspawnDefault | (try Self.capability("SYS_TIME")))
        #expect(allowed.isSuperset(of: ["add_key", "keyctl", "request_key", "execve"]))
        #expect(allowed.isDisjoint(with: ["clock_settime", "adjtimex", "sethostname"]))
        // A call both allowed and denied is denied, whatever the order of the values.
        try settings.add("~keyctl")
        try settings.add("sethostname")
        allowed = SystemCallFilter.allowed(settings, boundingSet: Self.nspawnDefault)
        #expect(!allowed.contains("keyctl"))
        #expect(!allowed.contains("sethostname"))
        #expect(allowed.contains("add_key"))
        // Several spaces and tabs separate names; 32-bit-only names are known too.
        var spaced = SystemCallFilterSettings()
        try spaced.add("~  mmap2\tsocketcall  ")
        #expect(spaced.deny == ["mmap2", "socketcall"])
    }

    @Test func unknownNamesAreRefused() throws {
        for bad in ["nosuchcall", "add_key nosuchcall", "~@nosuchgroup", "@", "~bpf, kexec_load"] {
            var settings = SystemCallFilterSettings()
            #expect(throws: RunnerError.self) { try settings.add(bad) }
            #expect(settings.isEmpty, "nothing kept from \(bad)")
        }
        var settings = SystemCallFilterSettings()
        #expect(throws: RunnerError.invalidOption(option: "--system-call-filter (unknown system call)", value: "nosuchcall")) {
            try settings.add("read nosuchcall")
        }
    }

    @Test func programsAreTwoLengthPrefixedFilters() throws {
        let bytes = try SeccompFilter.program(boundingSet: Self.nspawnDefault)
        var offset = 0
        var counts: [Int] = []
        while offset < bytes.count {
            #expect(bytes.count - offset >= 4)
            let count = bytes[offset..<offset + 4].enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
            #expect(count > 0 && count <= 4096)
            offset += 4 + count * 8
            counts.append(count)
        }
        #expect(offset == bytes.count)
        #expect(counts.count == 2)
        // More allowed calls (a capability, an added group) change the allow-list program only.
        var settings = SystemCallFilterSettings()
        try settings.add("@keyring")
        #expect(try SeccompFilter.program(settings, boundingSet: Self.nspawnDefault) != bytes)
        #expect(try SeccompFilter.program(boundingSet: Self.nspawnDefault) == bytes)
    }

    @Test func machineRecordsKeepTheFilterAndOldRecordsStillDecode() throws {
        let old = #"{"kind":"container","leader":42,"name":"old","root":"/srv/old","started":1700000000,"stopSignal":9,"supervisor":41}"#
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let record = try decoder.decode(ContainerRecord.self, from: Data(old.utf8))
        #expect(record.systemCallFilter == nil)
        var settings = SystemCallFilterSettings()
        try settings.add("~@clock")
        var updated = record
        updated.systemCallFilter = settings
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        let again = try decoder.decode(ContainerRecord.self, from: try encoder.encode(updated))
        #expect(again.systemCallFilter?.deny == ["@clock"])
        #expect(again == updated)
    }
}
