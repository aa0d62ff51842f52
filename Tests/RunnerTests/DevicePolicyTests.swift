import CShims
import Testing
@testable import Runner

/// The device allow list and its two renderings (cgroup v1 devices lines, the cgroup v2 BPF
/// program), without root: the program is run by a small interpreter of the instructions it uses.
@Suite("Device policy")
struct DevicePolicyTests {
    @Test func defaultListIsNspawns() {
        let policy = DevicePolicy.nspawnDefault
        #expect(policy.devicesListLines == [
            "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 10:200 rwm",
            "c 5:2 rw", "c 136:* rw",
        ])
        #expect(policy.allows(.char, 1, 3, .all))
        #expect(policy.allows(.char, 136, 7, .readWrite))
        #expect(!policy.allows(.char, 136, 7, .mknod))
        #expect(!policy.allows(.char, 5, 2, .mknod))
        #expect(!policy.allows(.block, 7, 0, .read))
        #expect(!policy.allows(.char, 10, 237, .read))  // /dev/loop-control
        #expect(!policy.allows(.block, 1, 3, .read))  // the type counts
    }

    @Test func boundHostDevicesAreAllowed() {
        let devices: [String: (kind: DevicePolicy.Kind, major: UInt32, minor: UInt32)] = [
            "/dev/full": (.char, 1, 7), "/dev/sdz": (.block, 8, 240), "/dev/ttyS9": (.char, 4, 73),
        ]
        let mounts: [ExtraMount] = [
            .bind(source: MountPath(path: "/dev/sdz", inRoot: false), target: "/mnt/disk", readOnly: true, recursive: true),
            .bind(source: MountPath(path: "/dev/ttyS9", inRoot: false), target: "/dev/ttyS9", readOnly: false, recursive: true),
            .bind(source: MountPath(path: "/dev/full", inRoot: false), target: "/mnt/full", readOnly: false, recursive: true),
            // Inside the container: the image must not pick a host device.
            .bind(source: MountPath(path: "/dev/sdz", inRoot: true), target: "/mnt/b", readOnly: false, recursive: true),
            .bind(source: MountPath(path: "/srv/data", inRoot: false), target: "/data", readOnly: false, recursive: true),
            .bind(source: nil, target: "/scratch", readOnly: false, recursive: true),
            .tmpfs(target: "/tmp2", flags: 0, data: ""),
        ]
        let policy = DevicePolicy.nspawnDefault.allowingBoundDevices(mounts) { devices[$0] }
        // /dev/full is on the list already.
        #expect(Array(policy.devicesListLines.dropFirst(DevicePolicy.nspawnDefault.rules.count)) == ["b 8:240 r", "c 4:73 rw"])
        #expect(policy.allows(.block, 8, 240, .read))
        #expect(!policy.allows(.block, 8, 240, .write))
        #expect(!policy.allows(.block, 8, 240, .mknod))
    }

    @Test func hostDeviceLookupReadsNumbers() {
        #expect(DevicePolicy.hostDevice("/dev/null")! == (.char, 1, 3))
        #expect(DevicePolicy.hostDevice("/") == nil)
        // glibc's makedev(0x1003, 0x10005): both numbers split across the 64 bits.
        #expect(DevicePolicy.majorNumber(0x0000_1000_1000_0305) == 0x1003)
        #expect(DevicePolicy.minorNumber(0x0000_1000_1000_0305) == 0x1_0005)
    }

    @Test func programMatchesTheList() throws {
        let policy = DevicePolicy.nspawnDefault.allowingBoundDevices(
            [.bind(source: MountPath(path: "/dev/sdz", inRoot: false), target: "/mnt", readOnly: true, recursive: true)]
        ) { _ in (.block, 8, 0) }
        let program = DeviceCgroup.program(policy)
        #expect(!program.isEmpty)
        #expect(program.count <= 8 + 7 * policy.rules.count)
        let kinds: [DevicePolicy.Kind] = [.char, .block]
        let numbers: [(UInt32, UInt32)] = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (1, 4), (5, 0), (5, 1), (5, 2), (10, 200),
                                           (10, 237), (136, 0), (136, 4711), (7, 0), (8, 0), (8, 1), (0, 0)]
        for kind in kinds {
            for (major, minor) in numbers {
                for bits in UInt32(1)...7 {
                    let access = DevicePolicy.Access(rawValue: bits)
                    let result = try #require(BPFInterpreter.run(program, kind: kind, major: major, minor: minor, access: access))
                    #expect((result == 1) == policy.allows(kind, major, minor, access),
                            "\(kind) \(major):\(minor) access \(bits): program says \(result)")
                }
            }
        }
        // Nothing allowed: the program still loads and denies.
        let none = DeviceCgroup.program(DevicePolicy(rules: []))
        #expect(none.count == 8)
        #expect(BPFInterpreter.run(none, kind: .char, major: 1, minor: 3, access: .read) == 0)
    }

    @Test func cgroupHierarchiesPerLayout() throws {
        let hybridText = """
            9:name=systemd:/
            8:pids:/
            5:devices:/
            4:memory:/process_api/x
            3:cpuset:/
            1:cpu,cpuacct:/
            0::/
            """
        let hybrid = CgroupTree.parseLayout(hybridText, unifiedMountExists: true)
        let hierarchies = try CgroupTree.hierarchies(hybrid, controllerPaths: CgroupTree.controllerPaths(hybridText))
        #expect(hierarchies == [
            .init(mount: "/sys/fs/cgroup/systemd", path: "/", role: .plain),
            .init(mount: "/sys/fs/cgroup/unified", path: "/", role: .unified),
            .init(mount: "/sys/fs/cgroup/cpu,cpuacct", path: "/", role: .plain),
            .init(mount: "/sys/fs/cgroup/cpuset", path: "/", role: .cpuset),
            .init(mount: "/sys/fs/cgroup/devices", path: "/", role: .devices),
            .init(mount: "/sys/fs/cgroup/memory", path: "/process_api/x", role: .plain),
            .init(mount: "/sys/fs/cgroup/pids", path: "/", role: .plain),
        ])
        #expect(hierarchies[5].parent == "/sys/fs/cgroup/memory/process_api/x")
        let legacy = CgroupTree.parseLayout("2:name=systemd:/a\n1:devices:/a\n0::/a\n", unifiedMountExists: false)
        #expect(try CgroupTree.hierarchies(legacy, controllerPaths: ["devices": "/a"]).map(\.role) == [.plain, .devices])
        let unified = CgroupTree.parseLayout("0::/user.slice\n", unifiedMountExists: false)
        #expect(try CgroupTree.hierarchies(unified, controllerPaths: [:]) == [.init(mount: "/sys/fs/cgroup", path: "/user.slice", role: .unified)])
    }

    @Test func shellJoinsEveryHierarchyOfTheLeader() {
        let files = ContainerShell.cgroupFiles(forProcessCgroups: """
            9:name=systemd:/imagectl-m.scope
            5:devices:/imagectl-m.scope/payload
            1:cpu,cpuacct:/imagectl-m.scope
            0::/imagectl-m.scope
            """, unifiedMountExists: true)
        #expect(files == [
            "/sys/fs/cgroup/systemd/imagectl-m.scope/cgroup.procs",
            "/sys/fs/cgroup/devices/imagectl-m.scope/payload/cgroup.procs",
            "/sys/fs/cgroup/cpu,cpuacct/imagectl-m.scope/cgroup.procs",
            "/sys/fs/cgroup/unified/imagectl-m.scope/cgroup.procs",
        ])
    }
}

/// Runs a device program the way the kernel would for one access, for the few instruction kinds
/// the generator uses; nil for anything else (an unexpected instruction fails the test).
enum BPFInterpreter {
    static func run(_ program: [img_bpf_insn], kind: DevicePolicy.Kind, major: UInt32, minor: UInt32,
                    access: DevicePolicy.Access) -> UInt64? {
        // struct bpf_cgroup_dev_ctx: access_type (access << 16 | type), major, minor.
        let type: UInt32 = kind == .block ? 1 : 2
        let context: [Int: UInt32] = [0: access.rawValue << 16 | type, 4: major, 8: minor]
        var registers = [UInt64](repeating: 0, count: 11)
        var pc = 0
        var steps = 0
        while pc < program.count && steps < 10_000 {
            let insn = program[pc]
            pc += 1
            steps += 1
            let dst = Int(insn.dst_reg), src = Int(insn.src_reg)
            guard dst < 11, src < 11 else { return nil }
            let operand = insn.code & 0x08 != 0 ? registers[src] : UInt64(bitPattern: Int64(insn.immediate))
            switch insn.code & 0x07 {
            case 0x01:  // LDX: only 32-bit loads from the context in r1, before r1 is reused
                guard insn.code == 0x61, src == 1, registers[1] == 0, let value = context[Int(insn.offset)] else { return nil }
                registers[dst] = UInt64(value)
            case 0x04, 0x07:  // ALU (32-bit result), ALU64
                var value: UInt64
                switch insn.code & 0xF0 {
                case 0xB0: value = operand
                case 0x50: value = registers[dst] & operand
                case 0x70: value = registers[dst] >> (operand & 63)
                default: return nil
                }
                if insn.code & 0x07 == 0x04 { value &= 0xFFFF_FFFF }
                registers[dst] = value
            case 0x05:
                switch insn.code & 0xF0 {
                case 0x90: return registers[0]
                case 0x50: if registers[dst] != operand { pc += Int(insn.offset) }
                default: return nil
                }
            default:
                return nil
            }
        }
        return nil
    }
}
