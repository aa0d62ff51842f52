import CShims
import Glibc

/// Memory for what a clone()d child reads (`struct img_container_config`, `img_enter_config`, the
/// set-up plan): C strings, NULL-terminated string lists and arrays, owned here and freed when the
/// arena goes. The child reads its own copy of the address space, so everything must live until
/// the clone returned; a plain arena spares the nested withUnsafe... closures.
final class ChildArena {
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var allocations: [UnsafeMutableRawPointer] = []

    /// A NUL-terminated copy of `s`.
    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        strings.append(p)
        return UnsafePointer(p)
    }

    func optionalString(_ s: String?) -> UnsafePointer<CChar>? { s.map(string) }

    /// A copy of `items` (at least one element allocated, so the pointer is never NULL).
    func array<T>(_ items: [T]) -> UnsafePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, items.count))
        for (i, item) in items.enumerated() { (p + i).initialize(to: item) }
        allocations.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    /// `items` as C strings followed by NULL.
    func stringList(_ items: [String]) -> UnsafePointer<UnsafePointer<CChar>?> {
        array(items.map { Optional(string($0)) } + [nil])
    }

    func bytes(_ bytes: [UInt8]) -> UnsafeRawPointer { UnsafeRawPointer(array(bytes)) }

    /// The payload of `run` or `shell` (`struct img_payload`).
    func payload(_ p: PayloadDescription) -> img_payload {
        var payload = img_payload()
        payload.argv = stringList(p.argv)
        payload.envp = stringList(p.environment)
        payload.working_directory = string(p.workingDirectory)
        payload.working_directory_or_root = p.workingDirectoryOrRoot ? 1 : 0
        payload.uid = p.uid
        payload.gid = p.gid
        payload.groups = array(p.groups.map { gid_t($0) })
        payload.group_count = p.groups.count
        payload.capabilities = p.capabilities
        payload.no_new_privileges = p.noNewPrivileges ? 1 : 0
        payload.seccomp_program = bytes(p.seccompProgram)
        payload.seccomp_program_size = p.seccompProgram.count
        return payload
    }

    /// The set-up plan as the C child's operation table.
    func operations(_ plan: SetupPlan) -> UnsafePointer<img_setup_op> {
        array(plan.steps.map(operation))
    }

    private func path(_ p: SetupPath) -> img_path {
        let place: img_place = switch p.place {
        case .root: IMG_IN_ROOT
        case .host: IMG_ON_HOST
        case .tree: IMG_IN_TREE
        }
        return img_path(path: string(p.path), place: place)
    }

    private func etcFile(_ plan: EtcFilePlan) -> UnsafePointer<img_etc_file> {
        var f = img_etc_file()
        f.steps = plan.steps.rawValue
        f.replace = plan.replace ? 1 : 0
        f.host_path = string(plan.hostPath)
        f.contents = bytes(plan.contents)
        f.size = plan.contents.count
        f.link_target = string(plan.linkTarget)
        f.link_check = string(plan.linkCheck)
        return array([f])
    }

    private func operation(_ step: SetupStep) -> img_setup_op {
        var op = img_setup_op()
        op.phase = step.phase == .child ? IMG_PHASE_CHILD : IMG_PHASE_PID1
        op.owner = -1
        op.group = -1
        var options: Int32 = 0
        func set(_ option: img_setup_op_option, _ on: Bool) { if on { options |= Int32(option.rawValue) } }
        func owner(_ id: UInt32?) {
            op.owner = id.map(Int64.init) ?? -1
            op.group = op.owner
        }
        switch step.operation {
        case .root(let target):
            op.kind = IMG_OP_ROOT
            op.target = path(target)
        case .mkdir(let target, let mode, let id):
            op.kind = IMG_OP_MKDIR
            op.target = path(target)
            op.mode = mode
            owner(id)
        case .mount(let fstype, let source, let at, let flags, let data, let mode, let byPath):
            op.kind = IMG_OP_MOUNT
            op.fstype = optionalString(fstype)
            op.source = img_path(path: optionalString(source), place: IMG_ON_HOST)
            op.target = path(.root(at))
            op.flags = flags
            op.data = optionalString(data)
            op.mode = mode
            set(IMG_OPT_BY_PATH, byPath)
        case .bind(let source, let target, let recursive, let readOnly, let idmap):
            op.kind = IMG_OP_BIND
            op.source = path(source)
            op.target = path(.root(target))
            set(IMG_OPT_RECURSIVE, recursive)
            set(IMG_OPT_READ_ONLY, readOnly)
            set(IMG_OPT_IDMAP, idmap)
        case .makeTarget(let source, let target):
            op.kind = IMG_OP_MAKE_TARGET
            op.source = path(source)
            op.target = path(target)
        case .mknod(let target, let mode, let device, let id):
            op.kind = IMG_OP_MKNOD
            op.target = path(.root(target))
            op.mode = mode
            op.device = device
            owner(id)
        case .symlink(let target, let to, let id, let existingIsFine):
            op.kind = IMG_OP_SYMLINK
            op.target = path(.root(target))
            op.source = img_path(path: string(to), place: IMG_IN_ROOT)
            owner(id)
            set(IMG_OPT_OPTIONAL, existingIsFine)
        case .mask(let target):
            op.kind = IMG_OP_MASK
            op.target = path(.root(target))
            set(IMG_OPT_OPTIONAL, true)
        case .overlay(let target, let lower, let upper, let work, let idmap):
            op.kind = IMG_OP_OVERLAY
            op.target = path(.root(target))
            let none = img_path(path: nil, place: IMG_IN_ROOT)
            op.layers = array(lower.map(path) + [upper.map(path) ?? none, work.map(path) ?? none])
            op.layer_count = lower.count + 2
            op.flags = upper == nil ? UInt(Glibc.MS_RDONLY) : 0
            set(IMG_OPT_IDMAP, idmap)
        case .chown(let target, let uid, let gid, let mode, let optional):
            op.kind = IMG_OP_CHOWN
            op.target = path(target)
            op.owner = Int64(uid)
            op.group = Int64(gid)
            op.mode = mode ?? 0
            set(IMG_OPT_OPTIONAL, optional)
        case .etcFile(let name, let plan, let bindOnly):
            op.kind = IMG_OP_ETC_FILE
            op.etc_name = string(name)
            op.etc_file = etcFile(plan)
            set(IMG_OPT_BIND_ONLY, bindOnly)
        }
        op.options = options
        return op
    }

    deinit {
        strings.forEach { free($0) }
        allocations.forEach { $0.deallocate() }
    }
}
