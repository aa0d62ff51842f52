import Glibc

/// Where a path of the set-up plan is looked up (`enum img_place`).
struct SetupPath: Equatable, Sendable, CustomStringConvertible {
    enum Place: Equatable, Sendable {
        /// Beneath the plan's current root (the last `.root` operation).
        case root
        /// An absolute host path given by imagectl.
        case host
        /// Beneath the image's tree (the -D directory).
        case tree
    }
    var path: String
    var place: Place

    static func root(_ path: String) -> SetupPath { SetupPath(path: path, place: .root) }
    static func host(_ path: String) -> SetupPath { SetupPath(path: path, place: .host) }
    static func tree(_ path: String) -> SetupPath { SetupPath(path: path, place: .tree) }

    var description: String {
        switch place {
        case .root: path
        case .host: "host:\(path)"
        case .tree: "tree:\(path)"
        }
    }
}

/// One operation of the container's set-up (`struct img_setup_op`); what each does is said in
/// CShimsSetup.h, which setup.c carries out. Paths without a place are beneath the current root.
enum SetupOperation: Equatable, Sendable {
    /// Later root paths resolve beneath this one (re-opened: a mount just made on it counts).
    case root(SetupPath)
    case mkdir(SetupPath, mode: UInt32, owner: UInt32? = nil)
    /// `mode` non-zero: the mount point is made first. `fstype` nil: a remount or propagation change.
    case mount(fstype: String?, source: String?, at: String, flags: UInt, data: String? = nil, mode: UInt32 = 0, byPath: Bool = false)
    case bind(source: SetupPath, target: String, recursive: Bool, readOnly: Bool, idmap: Bool = false)
    /// A mount point made like the source (a directory or an empty file), nothing mounted.
    case makeTarget(source: SetupPath, target: SetupPath)
    case mknod(String, mode: UInt32, device: UInt64, owner: UInt32? = nil)
    case symlink(String, to: String, owner: UInt32? = nil, existingIsFine: Bool = false)
    /// The container's /dev/null bound read-only over the path, checked; a missing path is skipped.
    case mask(String)
    /// `lower` topmost first; `upper` and `work` nil: read-only. `idmap`: the lower layers are
    /// ID-mapped with the user namespace first.
    case overlay(target: String, lower: [SetupPath], upper: SetupPath?, work: SetupPath?, idmap: Bool = false)
    case chown(SetupPath, uid: UInt32, gid: UInt32, mode: UInt32? = nil, optional: Bool = false)
    /// /etc/resolv.conf or /etc/localtime; `bindOnly`: only the bind step (host side of a user namespace).
    case etcFile(name: String, plan: EtcFilePlan, bindOnly: Bool = false)
}

/// Which process runs an operation (`enum img_setup_phase`).
enum SetupPhase: Equatable, Sendable {
    /// The container child in the host's user namespace (every operation without a user namespace).
    case child
    /// The container's PID 1 inside its user namespace, chrooted into the root.
    case pid1
}

struct SetupStep: Equatable, Sendable {
    var phase: SetupPhase
    var operation: SetupOperation
}

/// The container's set-up as data: the root, /dev, /proc, /sys, the cgroup file systems, /run,
/// /tmp, the /etc files and the extra mounts, in the order nspawn makes them (its mount_all()
/// table and setup_* steps), each operation resolved here and carried out by the C child's loop.
/// Built without touching the system (the host's device numbers and what the tree holds are
/// inputs), so tests can compare the list with what nspawn does.
struct SetupPlan: Equatable, Sendable {
    var steps: [SetupStep] = []

    /// What the plan is built from.
    struct Input: Sendable {
        /// Owner and mode the ephemeral root takes from the tree (as the host sees them through
        /// the root's mount).
        struct TreeOwner: Equatable, Sendable {
            var uid: UInt32
            var gid: UInt32
            var mode: UInt32
        }
        enum RootKind: Equatable, Sendable {
            /// The tree itself, bound (or ID-mapped) onto the staging directory.
            case tree
            /// -x: overlayfs over the tree with a throw-away upper layer on a tmpfs.
            case ephemeral(owner: TreeOwner)
            /// --volatile=yes: a tmpfs root with the tree's /usr read-only.
            case volatile
        }
        struct HostDevice: Equatable, Sendable {
            var name: String
            var mode: UInt32
            var device: UInt64
        }
        /// --private-users=: the host ID of the container's root and whether the root is ID-mapped.
        struct UserNamespace: Equatable, Sendable {
            var base: UInt32
            var idmapRoot: Bool
        }

        var directory: String
        var staging: String
        var root: RootKind = .tree
        var readOnly = false
        var privateNetwork = false
        var cgroupLayout = CgroupTree.HostLayout(unified: true, controllers: [], hybrid: false)
        var cgroupDirectories: [String] = []
        var mounts: [ExtraMount] = []
        /// A host bind source without idmap/noidmap is ID-mapped (imagectl's default user namespace).
        var idmapBindsByDefault = false
        var resolvConf = EtcFilePlan()
        var localtime = EtcFilePlan()
        var userNamespace: UserNamespace? = nil
        /// The host's null, zero, full, random, urandom and tty (their modes and numbers are copied).
        var hostDevices: [HostDevice] = []
        /// Whether the tree holds a path (for --volatile=yes's /bin -> usr/bin & co).
        var treeHas: @Sendable (String) -> Bool = { _ in true }
    }

    /// The character devices every container gets (nspawn's copy_devnodes list, without the
    /// ones it makes elsewhere).
    static let deviceNodes = ["null", "zero", "full", "random", "urandom", "tty"]

    static let masked = ["proc/kallsyms", "proc/kcore", "proc/keys", "proc/sysrq-trigger", "proc/timer_list"]
    /// Directories made on the tree before it is ID-mapped: through an ID-mapped mount the host's
    /// root (outside the map) may not create anything (EOVERFLOW).
    static let apiDirectories: [(String, UInt32)] = [("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("run", 0o755), ("tmp", 0o755)]

    /// A temporary bind source or overlay upper layer that was not made yet (RootSession makes
    /// them before the plan is built).
    struct Unresolved: Error, Equatable { var target: String }

    init(_ input: Input) throws {
        let userns = input.userNamespace
        let owner = userns?.base
        let pid1: SetupPhase = userns == nil ? .child : .pid1
        func add(_ operation: SetupOperation, _ phase: SetupPhase = .child) { steps.append(SetupStep(phase: phase, operation: operation)) }
        func uidOptions(_ options: String) -> String { owner.map { "\(options),uid=\($0),gid=\($0)" } ?? options }
        let api = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)

        if let owner {
            // The container's cgroups belong to its root, as nspawn delegates them: the directory
            // and the files a delegated subtree needs writable (v2's delegation set, v1's tasks).
            for directory in input.cgroupDirectories {
                add(.chown(.host(directory), uid: owner, gid: owner))
                for file in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks"] {
                    add(.chown(.host("\(directory)/\(file)"), uid: owner, gid: owner, optional: true))
                }
            }
        }
        Self.rootOperations(input).forEach { add($0) }
        // imagectl detaches its own copy of an image's mounts once the container runs; that must
        // not propagate in (the host's mounts are slaves here).
        add(.mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_REC | MS_PRIVATE)))
        if let owner, input.root != .tree { add(.chown(.root("."), uid: owner, gid: owner)) }

        // /dev: a tmpfs with fresh nodes of the host's numbers and modes (a chown inside never
        // touches the host's), owned by the namespace's root with a user namespace.
        add(.mount(fstype: "tmpfs", source: "tmpfs", at: "dev", flags: UInt(MS_NOSUID | MS_STRICTATIME),
                   data: uidOptions("mode=0755,size=4m,nr_inodes=64k"), mode: 0o755))
        for device in input.hostDevices { add(.mknod("dev/\(device.name)", mode: device.mode & 0o777, device: device.device, owner: owner)) }
        for (name, mode) in [("pts", UInt32(0o755)), ("shm", 0o1777), ("mqueue", 0o755)] { add(.mkdir(.root("dev/\(name)"), mode: mode, owner: owner)) }
        for (name, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            add(.symlink("dev/\(name)", to: target, owner: owner))
        }
        // devpts, shm and mqueue belong to the namespaces of whoever mounts them: PID 1 with a user
        // namespace. gid 5 is "tty" on Debian and in systemd's defaults, as nspawn uses it.
        let devFileSystems: [SetupOperation] = [
            .mount(fstype: "devpts", source: "devpts", at: "dev/pts", flags: UInt(MS_NOSUID | MS_NOEXEC), data: "newinstance,ptmxmode=0666,mode=620,gid=5"),
            .mount(fstype: "tmpfs", source: "tmpfs", at: "dev/shm", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME), data: "mode=01777"),
            .mount(fstype: "mqueue", source: "mqueue", at: "dev/mqueue", flags: api),
        ]
        if userns == nil { devFileSystems.forEach { add($0) } }

        // /proc of the new PID namespace (only its PID 1 can mount it with a user namespace, by
        // path: /proc/self/fd does not exist yet), /proc/sys read-only, kernel files masked.
        add(.mount(fstype: "proc", source: "proc", at: userns == nil ? "proc" : "/proc", flags: api, mode: 0o555, byPath: userns != nil), pid1)
        add(.bind(source: .root("proc/sys"), target: "proc/sys", recursive: true, readOnly: false), pid1)
        add(.mount(fstype: nil, source: nil, at: "proc/sys", flags: UInt(MS_BIND | MS_REMOUNT | MS_RDONLY) | api), pid1)
        for path in Self.masked { add(.mask(path), pid1) }
        // sysfs of the host's network namespace only from the host side; of a private one only
        // from inside the namespaces that own it.
        let sysfs = SetupOperation.mount(fstype: "sysfs", source: "sysfs", at: "sys", flags: UInt(MS_RDONLY) | api, mode: 0o555)
        add(sysfs, input.privateNetwork ? pid1 : .child)
        Self.cgroupMounts(input.cgroupLayout).forEach { add($0, pid1) }
        if userns != nil { devFileSystems.forEach { add($0, .pid1) } }
        add(.mount(fstype: "tmpfs", source: "tmpfs", at: "run", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME),
                   data: uidOptions("mode=0755,size=20%,nr_inodes=800k"), mode: 0o755))
        add(.mount(fstype: "tmpfs", source: "tmpfs", at: "tmp", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME),
                   data: uidOptions("mode=01777"), mode: 0o1777))

        // The /etc files before the extra mounts, so a --bind= onto either stays on top. Under a
        // user namespace the bind step is the host side's (PID 1 can neither reach the host file
        // nor bind a mount of the host's namespace), the rest PID 1's (it writes as the
        // container's root).
        for (name, plan) in [("resolv.conf", input.resolvConf), ("localtime", input.localtime)] where plan.steps != [] {
            if userns != nil { add(.etcFile(name: name, plan: plan, bindOnly: true)) }
            add(.etcFile(name: name, plan: plan), pid1)
        }
        for mount in input.mounts { add(try Self.extraMount(mount, input: input)) }
        if let owner {
            for case .tmpfs(let target, _, _) in input.mounts { add(.chown(.root(target), uid: owner, gid: owner)) }
        }
    }

    /// The root on the staging directory, and its mount points where the tree is ID-mapped.
    static func rootOperations(_ input: Input) -> [SetupOperation] {
        let idmapRoot = input.userNamespace?.idmapRoot ?? false
        var operations: [SetupOperation] = []
        func add(_ operation: SetupOperation) { operations.append(operation) }
        switch input.root {
        case .volatile:
            add(.root(.host(input.staging)))
            add(.mount(fstype: "tmpfs", source: "tmpfs", at: ".", flags: UInt(MS_NOSUID | MS_NODEV | MS_STRICTATIME), data: "mode=0755"))
            add(.root(.host(input.staging)))
            add(.bind(source: .tree("usr"), target: "usr", recursive: true, readOnly: true, idmap: idmapRoot))
            // The merged-/usr links systemd's base-filesystem.c makes (ld.so is found through
            // /lib64), each only when the tree's /usr has the directory.
            for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] where input.treeHas(target) {
                add(.symlink(link, to: target))
            }
            return operations
        case .ephemeral(let owner):
            // The throw-away layer is a tmpfs that exists only in this mount namespace: it goes
            // away with the namespace on every exit path, kill -9 of imagectl included.
            add(.root(.host(input.staging)))
            add(.mount(fstype: "tmpfs", source: "tmpfs", at: ".", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=0700"))
            add(.root(.host(input.staging)))
            for (name, mode) in [("upper", UInt32(0o755)), ("work", 0o700), ("root", 0o755)] { add(.mkdir(.root(name), mode: mode)) }
            // The merged root takes the upper directory's owner and mode: the tree's.
            add(.chown(.root("upper"), uid: owner.uid, gid: owner.gid, mode: owner.mode & 0o7777))
            add(.overlay(target: "root", lower: [.host(input.directory)], upper: .root("upper"), work: .root("work"), idmap: idmapRoot))
            add(.root(.root("root")))
        case .tree:
            if idmapRoot && !input.readOnly {
                for (directory, mode) in Self.apiDirectories { add(.mkdir(.tree(directory), mode: mode)) }
                for mount in input.mounts where !Self.isBelowAPIDirectory(mount.target) {
                    if case .bind(let source?, let target, _, _) = mount {
                        add(.makeTarget(source: source.inRoot ? .tree(source.path) : .host(source.path), target: .tree(target)))
                    } else {
                        add(.mkdir(.tree(mount.target), mode: 0o755))
                    }
                }
            }
            add(.root(.host(input.staging)))
            add(.bind(source: .host(input.directory), target: ".", recursive: true, readOnly: false, idmap: idmapRoot))
            add(.root(.host(input.staging)))
        }
        if input.readOnly { add(.mount(fstype: nil, source: nil, at: ".", flags: UInt(MS_BIND | MS_REMOUNT | MS_RDONLY))) }
        return operations
    }

    /// Below /dev, /run, /tmp & co a target is made later, on those fresh file systems.
    static func isBelowAPIDirectory(_ target: String) -> Bool {
        let path = target.drop { $0 == "/" }
        return apiDirectories.contains { path.hasPrefix($0.0 + "/") }
    }

    /// cgroup file systems as nspawn mounts them for a container with a cgroup namespace: on a
    /// legacy or hybrid host a read-only tmpfs at /sys/fs/cgroup holding each v1 controller
    /// hierarchy read-only, the named "systemd" hierarchy writable and (hybrid) the v2 tree at
    /// "unified" writable; on a unified host cgroup2 at /sys/fs/cgroup. The cgroup namespace
    /// makes the container's own cgroup the root of each.
    static func cgroupMounts(_ layout: CgroupTree.HostLayout) -> [SetupOperation] {
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        let base = "sys/fs/cgroup"
        if layout.unified { return [.mount(fstype: "cgroup2", source: "cgroup2", at: base, flags: flags, mode: 0o755)] }
        var operations: [SetupOperation] = [.mount(fstype: "tmpfs", source: "tmpfs", at: base, flags: flags, data: "mode=0755", mode: 0o755)]
        for controllers in layout.controllers {
            operations.append(.mount(fstype: "cgroup", source: "cgroup", at: "\(base)/\(controllers)", flags: flags | UInt(MS_RDONLY), data: controllers, mode: 0o755))
            // A joined hierarchy ("cpu,cpuacct") also gets one symlink per controller.
            let names = controllers.split(separator: ",")
            if names.count > 1 {
                for name in names { operations.append(.symlink("\(base)/\(name)", to: controllers, existingIsFine: true)) }
            }
        }
        if layout.hybrid { operations.append(.mount(fstype: "cgroup2", source: "cgroup2", at: "\(base)/unified", flags: flags, mode: 0o755)) }
        operations.append(.mount(fstype: "cgroup", source: "cgroup", at: "\(base)/systemd", flags: flags, data: "none,name=systemd", mode: 0o755))
        operations.append(.mount(fstype: nil, source: nil, at: base, flags: UInt(MS_REMOUNT | MS_RDONLY) | flags, data: "mode=0755"))
        return operations
    }

    /// One --bind/--tmpfs/--overlay: after the API file systems, as nspawn makes its custom
    /// mounts, so a --tmpfs=/run replaces the default one.
    static func extraMount(_ mount: ExtraMount, input: Input) throws(Unresolved) -> SetupOperation {
        switch mount {
        case .bind(let source, let target, let readOnly, let recursive):
            guard let source else { throw Unresolved(target: target) }
            let idmap = input.userNamespace != nil && (source.idmap ?? (input.idmapBindsByDefault && !source.inRoot))
            return .bind(source: source.inRoot ? .root(source.path) : .host(source.path), target: target,
                         recursive: recursive, readOnly: readOnly, idmap: idmap)
        case .tmpfs(let target, let flags, let data):
            return .mount(fstype: "tmpfs", source: "tmpfs", at: target, flags: flags, data: data, mode: 0o755)
        case .overlay(let lower, let upper, let work, let target):
            func place(_ p: MountPath) -> SetupPath { p.inRoot ? .root(p.path) : .host(p.path) }
            if let upper, upper.path.isEmpty || work == nil { throw Unresolved(target: target) }
            // overlayfs lists the topmost lower layer first; the command line the bottom one.
            return .overlay(target: target, lower: lower.reversed().map(place), upper: upper.map(place), work: work.map(place))
        }
    }
}
