import Glibc
import Testing

@testable import Runner

/// The container's set-up plan, built without root: for given options the list is what nspawn
/// does (its mount_all() table, setup_dev/setup_pts, the /proc masks, the custom mounts).
@Suite("container set-up plan")
struct SetupPlanTests {
    static let null = SetupPlan.Input.HostDevice(name: "null", mode: 0o666, device: 0x103)
    static let tty = SetupPlan.Input.HostDevice(name: "tty", mode: 0o666, device: 0x500)

    func input(_ change: (inout SetupPlan.Input) -> Void = { _ in }) -> SetupPlan.Input {
        var input = SetupPlan.Input(directory: "/var/lib/machines/tree", staging: "/run/imagectl/runner/tree.1")
        input.hostDevices = [Self.null, Self.tty]
        input.cgroupDirectories = ["/sys/fs/cgroup/imagectl-tree.scope"]
        change(&input)
        return input
    }

    func operations(_ plan: SetupPlan, _ phase: SetupPhase) -> [SetupOperation] {
        plan.steps.filter { $0.phase == phase }.map(\.operation)
    }

    func mountPoints(_ plan: SetupPlan) -> [String] {
        plan.steps.compactMap { step in
            if case .mount(let fstype?, _, let at, _, _, _, _) = step.operation { return "\(fstype) \(at)" }
            return nil
        }
    }

    @Test func plainContainerIsOnePhaseInNspawnsOrder() throws {
        let plan = try SetupPlan(input())
        #expect(plan.steps.allSatisfy { $0.phase == .child })
        let ops = plan.steps.map(\.operation)
        #expect(Array(ops.prefix(4)) == [
            .root(.host("/run/imagectl/runner/tree.1")),
            .bind(source: .host("/var/lib/machines/tree"), target: ".", recursive: true, readOnly: false),
            .root(.host("/run/imagectl/runner/tree.1")),
            .mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_REC | MS_PRIVATE)),
        ])
        #expect(mountPoints(plan) == ["tmpfs dev", "devpts dev/pts", "tmpfs dev/shm", "mqueue dev/mqueue", "proc proc",
                                      "sysfs sys", "cgroup2 sys/fs/cgroup", "tmpfs run", "tmpfs tmp"])
        #expect(ops.contains(.mknod("dev/null", mode: 0o666, device: 0x103)))
        #expect(ops.contains(.symlink("dev/ptmx", to: "pts/ptmx")))
        // /proc/sys read-only and the kernel's secrets masked, after /dev (the mask is /dev/null).
        #expect(ops.contains(.mount(fstype: nil, source: nil, at: "proc/sys", flags: UInt(MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))))
        let masks = ops.compactMap { if case .mask(let path) = $0 { path } else { nil } }
        #expect(masks == ["proc/kallsyms", "proc/kcore", "proc/keys", "proc/sysrq-trigger", "proc/timer_list"])
        let firstMask = try #require(ops.firstIndex(of: .mask("proc/kallsyms")))
        let null = try #require(ops.firstIndex(of: .mknod("dev/null", mode: 0o666, device: 0x103)))
        #expect(null < firstMask)
        // No owner anywhere without a user namespace.
        #expect(!ops.contains { if case .chown = $0 { true } else { false } })
        #expect(!mountPoints(plan).isEmpty && !ops.contains { if case .mount(_, _, _, _, let data?, _, _) = $0 { data.contains("uid=") } else { false } })
    }

    @Test func userNamespaceSplitsTheWorkBetweenChildAndPID1() throws {
        let base: UInt32 = 0x80000
        let plan = try SetupPlan(input { $0.userNamespace = .init(base: base, idmapRoot: false) })
        let child = operations(plan, .child)
        let pid1 = operations(plan, .pid1)
        // The delegated cgroup is the container root's.
        #expect(child.first == .chown(.host("/sys/fs/cgroup/imagectl-tree.scope"), uid: base, gid: base))
        #expect(child.contains(.chown(.host("/sys/fs/cgroup/imagectl-tree.scope/cgroup.procs"), uid: base, gid: base, optional: true)))
        // The host side makes what needs host privileges, owned by the base.
        #expect(child.contains(.mknod("dev/null", mode: 0o666, device: 0x103, owner: base)))
        #expect(child.contains(.mount(fstype: "tmpfs", source: "tmpfs", at: "tmp", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME),
                                      data: "mode=01777,uid=\(base),gid=\(base)", mode: 0o1777)))
        #expect(child.contains { if case .mount("sysfs", _, "sys", _, _, _, _) = $0 { true } else { false } })
        // PID 1 mounts what belongs to its own namespaces: /proc first, by path.
        #expect(pid1.first == .mount(fstype: "proc", source: "proc", at: "/proc", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), mode: 0o555, byPath: true))
        let pid1Mounts = pid1.compactMap { if case .mount(let fstype?, _, let at, _, _, _, _) = $0 { "\(fstype) \(at)" } else { nil } }
        #expect(pid1Mounts == ["proc /proc", "cgroup2 sys/fs/cgroup", "devpts dev/pts", "tmpfs dev/shm", "mqueue dev/mqueue"])
        // With a private network, sysfs is PID 1's too.
        let privateNetwork = try SetupPlan(input {
            $0.userNamespace = .init(base: base, idmapRoot: false)
            $0.privateNetwork = true
        })
        #expect(operations(privateNetwork, .pid1).contains { if case .mount("sysfs", _, "sys", _, _, _, _) = $0 { true } else { false } })
    }

    @Test func idMappedRootGetsItsMountPointsBeforeTheMapping() throws {
        let plan = try SetupPlan(input {
            $0.userNamespace = .init(base: 0x80000, idmapRoot: true)
            $0.idmapBindsByDefault = true
            $0.mounts = [.bind(source: MountPath(path: "/srv/data", inRoot: false), target: "/data", readOnly: true, recursive: true),
                         .bind(source: MountPath(path: "/etc", inRoot: true), target: "/run/etc", readOnly: false, recursive: false),
                         .bind(source: MountPath(path: "/srv/raw", inRoot: false, idmap: false), target: "/raw", readOnly: false, recursive: true)]
        })
        let child = operations(plan, .child)
        #expect(child.contains(.mkdir(.tree("proc"), mode: 0o555)))
        #expect(child.contains(.makeTarget(source: .host("/srv/data"), target: .tree("/data"))))
        // Below /run the target is made later, on the fresh tmpfs.
        #expect(!child.contains(.makeTarget(source: .tree("/etc"), target: .tree("/run/etc"))))
        #expect(child.contains(.bind(source: .host("/var/lib/machines/tree"), target: ".", recursive: true, readOnly: false, idmap: true)))
        // Host sources ID-mapped by default, in-root sources and noidmap not.
        #expect(child.suffix(3) == [
            .bind(source: .host("/srv/data"), target: "/data", recursive: true, readOnly: true, idmap: true),
            .bind(source: .root("/etc"), target: "/run/etc", recursive: false, readOnly: false, idmap: false),
            .bind(source: .host("/srv/raw"), target: "/raw", recursive: true, readOnly: false, idmap: false),
        ])
        // A read-only tree gets no mount points made in it.
        let readOnly = try SetupPlan(input {
            $0.userNamespace = .init(base: 0x80000, idmapRoot: true)
            $0.readOnly = true
        })
        #expect(!operations(readOnly, .child).contains(.mkdir(.tree("proc"), mode: 0o555)))
    }

    @Test func readOnlyRemountsTheRoot() throws {
        let ops = try SetupPlan(input { $0.readOnly = true }).steps.map(\.operation)
        let remount = SetupOperation.mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_BIND | MS_REMOUNT | MS_RDONLY))
        #expect(ops[3] == remount)
        #expect(ops[4] == .mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_REC | MS_PRIVATE)))
    }

    @Test func volatileRootIsATmpfsWithTheTreesUsr() throws {
        let ops = try SetupPlan(input {
            $0.root = .volatile
            $0.treeHas = { $0 != "usr/lib64" }
        }).steps.map(\.operation)
        #expect(Array(ops.prefix(9)) == [
            .root(.host("/run/imagectl/runner/tree.1")),
            .mount(fstype: "tmpfs", source: "tmpfs", at: ".", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME), data: "mode=0755"),
            .root(.host("/run/imagectl/runner/tree.1")),
            .bind(source: .tree("usr"), target: "usr", recursive: true, readOnly: true),
            .symlink("bin", to: "usr/bin"),
            .symlink("sbin", to: "usr/sbin"),
            .symlink("lib", to: "usr/lib"),
            // no lib64: the tree has no usr/lib64
            .mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_REC | MS_PRIVATE)),
            .mount(fstype: "tmpfs", source: "tmpfs", at: "dev", flags: UInt(MS_NOSUID | MS_STRICTATIME), data: "mode=0755,size=4m,nr_inodes=64k", mode: 0o755),
        ])
    }

    @Test func ephemeralRootIsAnOverlayOnAThrowAwayTmpfs() throws {
        let ops = try SetupPlan(input { $0.root = .ephemeral(owner: .init(uid: 1000, gid: 100, mode: 0o750)) }).steps.map(\.operation)
        #expect(Array(ops.prefix(10)) == [
            .root(.host("/run/imagectl/runner/tree.1")),
            .mount(fstype: "tmpfs", source: "tmpfs", at: ".", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=0700"),
            .root(.host("/run/imagectl/runner/tree.1")),
            .mkdir(.root("upper"), mode: 0o755),
            .mkdir(.root("work"), mode: 0o700),
            .mkdir(.root("root"), mode: 0o755),
            .chown(.root("upper"), uid: 1000, gid: 100, mode: 0o750),
            .overlay(target: "root", lower: [.host("/var/lib/machines/tree")], upper: .root("upper"), work: .root("work")),
            .root(.root("root")),
            .mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_REC | MS_PRIVATE)),
        ])
        // Under a user namespace the throw-away root is the container root's.
        let mapped = try SetupPlan(input {
            $0.root = .ephemeral(owner: .init(uid: 0x80000, gid: 0x80000, mode: 0o755))
            $0.userNamespace = .init(base: 0x80000, idmapRoot: true)
        })
        #expect(operations(mapped, .child).contains(.chown(.root("."), uid: 0x80000, gid: 0x80000)))
        #expect(operations(mapped, .child).contains(.overlay(target: "root", lower: [.host("/var/lib/machines/tree")], upper: .root("upper"), work: .root("work"), idmap: true)))
    }

    @Test func extraMountsComeLastInTheirOrder() throws {
        let plan = try SetupPlan(input {
            $0.userNamespace = .init(base: 0x80000, idmapRoot: false)
            $0.mounts = [
                .tmpfs(target: "/run", flags: UInt(MS_NODEV), data: "mode=0700"),
                .overlay(lower: [MountPath(path: "/l1", inRoot: false), MountPath(path: "/l2", inRoot: true)],
                         upper: MountPath(path: "/u", inRoot: false), work: MountPath(path: "/w", inRoot: false), target: "/o"),
            ]
        })
        #expect(operations(plan, .child).suffix(3) == [
            .mount(fstype: "tmpfs", source: "tmpfs", at: "/run", flags: UInt(MS_NODEV), data: "mode=0700", mode: 0o755),
            .overlay(target: "/o", lower: [.root("/l2"), .host("/l1")], upper: .host("/u"), work: .host("/w")),
            // A --tmpfs belongs to the container's root.
            .chown(.root("/run"), uid: 0x80000, gid: 0x80000),
        ])
    }

    @Test func etcFilesBeforeExtraMountsAndSplitUnderAUserNamespace() throws {
        var resolv = EtcFilePlan()
        resolv.steps = [.bind, .copy]
        resolv.hostPath = "/etc/resolv.conf"
        let plain = try SetupPlan(input {
            $0.resolvConf = resolv
            $0.mounts = [.tmpfs(target: "/x", flags: 0, data: "")]
        }).steps.map(\.operation)
        let etc = try #require(plain.firstIndex(of: .etcFile(name: "resolv.conf", plan: resolv)))
        #expect(etc == plain.count - 2)
        let mapped = try SetupPlan(input {
            $0.resolvConf = resolv
            $0.userNamespace = .init(base: 0x80000, idmapRoot: true)
        })
        #expect(operations(mapped, .child).contains(.etcFile(name: "resolv.conf", plan: resolv, bindOnly: true)))
        #expect(operations(mapped, .pid1).last == .etcFile(name: "resolv.conf", plan: resolv))
        // A file left alone has no operation.
        #expect(!plain.contains { if case .etcFile("localtime", _, _) = $0 { true } else { false } })
    }

    @Test func legacyCgroupsAsNspawnMountsThem() throws {
        let layout = CgroupTree.HostLayout(unified: false, controllers: ["cpu,cpuacct", "memory"], hybrid: true)
        let ops = SetupPlan.cgroupMounts(layout)
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        #expect(ops == [
            .mount(fstype: "tmpfs", source: "tmpfs", at: "sys/fs/cgroup", flags: flags, data: "mode=0755", mode: 0o755),
            .mount(fstype: "cgroup", source: "cgroup", at: "sys/fs/cgroup/cpu,cpuacct", flags: flags | UInt(MS_RDONLY), data: "cpu,cpuacct", mode: 0o755),
            .symlink("sys/fs/cgroup/cpu", to: "cpu,cpuacct", existingIsFine: true),
            .symlink("sys/fs/cgroup/cpuacct", to: "cpu,cpuacct", existingIsFine: true),
            .mount(fstype: "cgroup", source: "cgroup", at: "sys/fs/cgroup/memory", flags: flags | UInt(MS_RDONLY), data: "memory", mode: 0o755),
            .mount(fstype: "cgroup2", source: "cgroup2", at: "sys/fs/cgroup/unified", flags: flags, mode: 0o755),
            .mount(fstype: "cgroup", source: "cgroup", at: "sys/fs/cgroup/systemd", flags: flags, data: "none,name=systemd", mode: 0o755),
            .mount(fstype: nil, source: nil, at: "sys/fs/cgroup", flags: UInt(MS_REMOUNT | MS_RDONLY) | flags, data: "mode=0755"),
        ])
    }
}
