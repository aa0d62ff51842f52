import CShims
import Glibc

/// Puts a `DevicePolicy` into effect on a cgroup: the v1 devices controller's list (file writes)
/// or the v2 device BPF program (built here, loaded by CShims/devices.c). On a hybrid host CgroupTree applies both; the
/// kernel runs the BPF program and then checks the v1 list, and both must allow.
enum DeviceCgroup {
    /// Makes `directory` (a fresh cgroup of the v1 devices hierarchy, without children: the
    /// kernel refuses "a" on a cgroup that has some) deny everything but `policy`. A new child
    /// copies this list, and no one in a child can widen it beyond it.
    static func applyList(_ policy: DevicePolicy, to directory: String) throws {
        try write("a", to: directory + "/devices.deny")
        for line in policy.devicesListLines {
            do {
                try write(line, to: directory + "/devices.allow")
            } catch RunnerError.startFailed(_, let code) where code == EPERM {
                // imagectl's own devices cgroup lacks this device (imagectl runs in a container
                // itself): the container cannot get more than its parent, so it goes without.
                continue
            }
        }
    }

    /// Attaches the BPF program for `policy` to the cgroup v2 directory `directory`.
    static func attachProgram(_ policy: DevicePolicy, to directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw RunnerError.startFailed(step: "open \(directory)", errno: errno) }
        defer { close(fd) }
        let instructions = program(policy)
        let result = instructions.withUnsafeBufferPointer { img_device_program_attach(fd, $0.baseAddress, $0.count) }
        guard result == 0 else { throw RunnerError.startFailed(step: "attaching the device BPF program to \(directory)", errno: errno) }
    }

    /// The BPF_PROG_TYPE_CGROUP_DEVICE program for `policy`, the shape systemd's bpf-devices.c
    /// and runc's devicefilter emit. Hand-built rather than libbpf's: a few dozen instructions of
    /// one fixed shape, where libbpf would need a compiled BPF object and clang at build time.
    /// Registers as systemd names them: r2 the device type, r3 the requested access, r4 major, r5
    /// minor (read once from the context in r1), r1 scratch afterwards. Each rule is a block that
    /// jumps past its end on the first mismatch and returns 1 (allow) at its end; past the last
    /// rule the program returns 0 (deny).
    static func program(_ policy: DevicePolicy) -> [img_bpf_insn] {
        // Opcodes (linux/bpf_common.h, linux/bpf.h) and offsets in struct bpf_cgroup_dev_ctx.
        let load: UInt8 = 0x61, and: UInt8 = 0x54, shiftRight: UInt8 = 0x74, move32: UInt8 = 0xBC
        let move64: UInt8 = 0xB7, jumpIfNotEqual: UInt8 = 0x55, exit: UInt8 = 0x95
        let accessType: Int16 = 0, major: Int16 = 4, minor: Int16 = 8
        func insn(_ code: UInt8, _ dst: UInt8, _ src: UInt8 = 0, _ offset: Int16 = 0, _ immediate: Int32 = 0) -> img_bpf_insn {
            img_bpf_insn(code: code, dst_reg: dst, src_reg: src, offset: offset, immediate: immediate)
        }
        var out = [insn(load, 2, 1, accessType), insn(and, 2, 0, 0, 0xFFFF), insn(load, 3, 1, accessType),
                   insn(shiftRight, 3, 0, 0, 16), insn(load, 4, 1, major), insn(load, 5, 1, minor)]
        let all = DevicePolicy.Access.all.rawValue
        for rule in policy.rules {
            var block: [img_bpf_insn] = [insn(jumpIfNotEqual, 2, 0, 0, rule.kind == .char ? 2 : 1)]
            if rule.access.rawValue & all != all {
                // Any requested bit outside the rule's access: not this rule.
                block += [insn(move32, 1, 3), insn(and, 1, 0, 0, Int32(~rule.access.rawValue & all)), insn(jumpIfNotEqual, 1)]
            }
            if let number = rule.major { block.append(insn(jumpIfNotEqual, 4, 0, 0, Int32(bitPattern: number))) }
            if let number = rule.minor { block.append(insn(jumpIfNotEqual, 5, 0, 0, Int32(bitPattern: number))) }
            // Every jump lands just past the block's "r0 = 1; exit" (offsets count from the next
            // instruction).
            for i in block.indices where block[i].code == jumpIfNotEqual { block[i].offset = Int16(block.count - i - 1 + 2) }
            out += block + [insn(move64, 0, 0, 0, 1), insn(exit, 0)]
        }
        return out + [insn(move64, 0, 0, 0, 0), insn(exit, 0)]
    }

    /// One write(2) of `text`: each line of a devices list must be its own write.
    private static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RunnerError.startFailed(step: "open \(path)", errno: errno) }
        defer { close(fd) }
        let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written == text.utf8.count else { throw RunnerError.startFailed(step: "write \"\(text)\" to \(path)", errno: errno) }
    }
}
