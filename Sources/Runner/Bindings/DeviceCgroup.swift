import CShims
import Glibc

/// Puts a `DevicePolicy` into effect on a cgroup: the v1 devices controller's list (file writes)
/// or the v2 device BPF program (CShims/devices.c). On a hybrid host CgroupTree applies both; the
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
        let rules = cRules(policy)
        let result = rules.withUnsafeBufferPointer { img_device_program_attach(fd, $0.baseAddress, $0.count) }
        guard result == 0 else { throw RunnerError.startFailed(step: "attaching the device BPF program to \(directory)", errno: errno) }
    }

    /// The program `attachProgram` loads, for tests.
    static func program(_ policy: DevicePolicy) -> [img_bpf_insn] {
        let rules = cRules(policy)
        var out = [img_bpf_insn](repeating: img_bpf_insn(), count: 8 + 7 * rules.count)
        let count = rules.withUnsafeBufferPointer { r in
            out.withUnsafeMutableBufferPointer { img_device_program(r.baseAddress, r.count, $0.baseAddress, $0.count) }
        }
        return count < 0 ? [] : Array(out.prefix(count))
    }

    static func cRules(_ policy: DevicePolicy) -> [img_device_rule] {
        policy.rules.map { rule in
            img_device_rule(
                type: rule.kind == .char ? UInt32(IMG_DEVICE_CHAR.rawValue) : UInt32(IMG_DEVICE_BLOCK.rawValue),
                major: rule.major.map { Int64($0) } ?? -1, minor: rule.minor.map { Int64($0) } ?? -1,
                access: rule.access.rawValue)
        }
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
