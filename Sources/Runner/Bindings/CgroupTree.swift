import CShims
import Foundation
import Glibc
import LinuxSystem

/// The container's own cgroup: a child of imagectl's cgroup in every hierarchy (the named
/// "systemd" v1 hierarchy, each v1 controller hierarchy and the v2 tree on a legacy/hybrid host,
/// or the single v2 tree), created before start, with the device policy in effect, and removed
/// after. The cgroup namespace the child unshares right after joining them makes them the
/// container's "/", so no cgroup mount it can make shows a hierarchy's real root (release_agent).
/// The v1 controller hierarchies are mounted read-only inside, as nspawn does.
struct CgroupTree {
    /// How the host mounts cgroups, from /proc/self/cgroup.
    struct HostLayout: Equatable {
        var unified: Bool
        /// v1 controller hierarchies ("cpu", "cpu,cpuacct") mounted under /sys/fs/cgroup.
        var controllers: [String]
        /// A v2 tree at /sys/fs/cgroup/unified (hybrid).
        var hybrid: Bool
        /// imagectl's own cgroup path in the named systemd hierarchy and in v2.
        var systemdPath: String?
        var unifiedPath: String?
    }

    /// Parses /proc/self/cgroup ("ID:CONTROLLERS:PATH" lines).
    static func parseLayout(_ text: String, unifiedMountExists: Bool) -> HostLayout {
        var layout = HostLayout(unified: false, controllers: [], hybrid: false, systemdPath: nil, unifiedPath: nil)
        var sawV1 = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = String(fields[1])
            let path = String(fields[2])
            if fields[0] == "0" && controllers.isEmpty {
                layout.unifiedPath = path
            } else if controllers == "name=systemd" {
                layout.systemdPath = path
                sawV1 = true
            } else if !controllers.isEmpty && !controllers.hasPrefix("name=") {
                layout.controllers.append(controllers)
                sawV1 = true
            }
        }
        layout.unified = !sawV1
        layout.hybrid = sawV1 && unifiedMountExists && layout.unifiedPath != nil
        layout.controllers.sort()
        return layout
    }

    let layout: HostLayout
    /// Host directories the container joins, one per hierarchy (in the v1 devices hierarchy the
    /// scope's `payload` child, below the scope that holds the device list).
    let directories: [String]
    /// The `imagectl-NAME.scope` directories, removed with everything below them.
    let scopes: [String]

    /// One hierarchy the container gets a scope in: where it is mounted, imagectl's own cgroup in
    /// it, and what the scope needs besides its directory.
    struct Hierarchy: Equatable {
        enum Role: Equatable {
            /// The named systemd hierarchy, or a v1 controller hierarchy other than devices.
            case plain
            /// A v1 hierarchy with the cpuset controller: a new cpuset cgroup has no CPUs and no
            /// memory nodes, and joining it fails until they are copied from the parent.
            case cpuset
            /// The v1 devices hierarchy: the scope holds the list, the container joins `payload`.
            case devices
            /// The v2 tree: the scope gets the device BPF program.
            case unified
        }
        var mount: String
        var path: String
        var role: Role

        var parent: String { mount + (path == "/" ? "" : path) }
    }

    /// Every hierarchy of `layout` the container gets a scope in: the named systemd one, the v2
    /// tree, and each v1 controller hierarchy, so that the container's cgroup namespace root is
    /// never a hierarchy's real root, the only place release_agent lives.
    static func hierarchies(_ layout: HostLayout, controllerPaths: [String: String]) throws -> [Hierarchy] {
        if layout.unified {
            return [Hierarchy(mount: "/sys/fs/cgroup", path: layout.unifiedPath ?? "/", role: .unified)]
        }
        guard let systemdPath = layout.systemdPath else {
            throw RunnerError.startFailed(step: "the host has no name=systemd cgroup hierarchy", errno: ENOENT)
        }
        var result = [Hierarchy(mount: "/sys/fs/cgroup/systemd", path: systemdPath, role: .plain)]
        if layout.hybrid, let unifiedPath = layout.unifiedPath {
            result.append(Hierarchy(mount: "/sys/fs/cgroup/unified", path: unifiedPath, role: .unified))
        }
        for controllers in layout.controllers {
            let names = controllers.split(separator: ",")
            let role: Hierarchy.Role = names.contains("devices") ? .devices : names.contains("cpuset") ? .cpuset : .plain
            result.append(Hierarchy(mount: "/sys/fs/cgroup/" + controllers, path: controllerPaths[controllers] ?? "/", role: role))
        }
        return result
    }

    /// imagectl's own cgroup in each v1 controller hierarchy, from /proc/self/cgroup.
    static func controllerPaths(_ text: String) -> [String: String] {
        var paths: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, !fields[1].isEmpty, !fields[1].hasPrefix("name=") else { continue }
            paths[String(fields[1])] = String(fields[2])
        }
        return paths
    }

    /// Creates `imagectl-NAME.scope` under imagectl's cgroup in each hierarchy and puts `devices`
    /// into effect on it (v1 list and/or v2 BPF program) before any process is in it. An existing
    /// one with processes in it means the machine runs already; an empty one, left by a run that
    /// was killed, is removed and made afresh (a devices list can only be reset without children,
    /// and a new v2 directory carries no earlier program).
    static func create(machine: String, devices: DevicePolicy) throws -> CgroupTree {
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        let layout = parseLayout(text, unifiedMountExists: access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0)
        let hierarchies = try Self.hierarchies(layout, controllerPaths: controllerPaths(text))
        guard hierarchies.contains(where: { $0.role == .devices || $0.role == .unified }) else {
            throw RunnerError.startFailed(step: "no devices cgroup controller and no cgroup v2 tree to enforce the device policy", errno: ENOTSUP)
        }
        // The hierarchies are read anyway: leftovers of ended containers go on the way.
        sweepEndedScopes(in: hierarchies)
        var scopes: [String] = []
        var joined: [String] = []
        do {
            for hierarchy in hierarchies {
                let scope = hierarchy.parent + "/imagectl-\(machine).scope"
                try makeScope(scope, machine: machine)
                scopes.append(scope)
                switch hierarchy.role {
                case .plain:
                    joined.append(scope)
                case .cpuset:
                    try copyCpuset(from: hierarchy.parent, to: scope)
                    joined.append(scope)
                case .devices:
                    try DeviceCgroup.applyList(devices, to: scope)
                    let payload = scope + "/payload"
                    guard mkdir(payload, 0o755) == 0 else { throw RunnerError.startFailed(step: "mkdir \(payload)", errno: errno) }
                    joined.append(payload)
                case .unified:
                    try DeviceCgroup.attachProgram(devices, to: scope)
                    joined.append(scope)
                }
            }
        } catch {
            Self.remove(scopes)
            throw error
        }
        return CgroupTree(layout: layout, directories: joined, scopes: scopes)
    }

    /// mkdir of a scope; an empty leftover is removed first (see `create`).
    private static func makeScope(_ directory: String, machine: String) throws {
        if mkdir(directory, 0o755) == 0 { return }
        let code = errno
        guard code == EEXIST else { throw RunnerError.startFailed(step: "mkdir \(directory)", errno: code) }
        // The processes of a container that just ended leave its cgroup a moment after
        // imagectl saw PID 1 exit (more so on a loaded machine, where remove() may have
        // given up): give them two seconds before calling the name taken. A machine that
        // really runs is normally caught earlier, by the registry.
        if Self.hasProcesses(directory) && !Self.empties(directory, within: 2_000_000) {
            throw RunnerError.alreadyRunning(machine)
        }
        Self.remove([directory])
        guard mkdir(directory, 0o755) == 0 else { throw RunnerError.startFailed(step: "mkdir \(directory)", errno: errno) }
    }

    private static func copyCpuset(from parent: String, to scope: String) throws {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            // The hierarchy may carry the files without the prefix (mounted with noprefix).
            guard let value = try? String(contentsOfFile: parent + "/" + file, encoding: .utf8) else { continue }
            let fd = open(scope + "/" + file, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw RunnerError.startFailed(step: "open \(scope)/\(file)", errno: errno) }
            defer { close(fd) }
            let text = value.trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.withCString({ write(fd, $0, strlen($0)) }) == text.utf8.count else {
                throw RunnerError.startFailed(step: "write \(scope)/\(file)", errno: errno)
            }
        }
    }

    /// Whether `directory` (and its children) has no processes left within `microseconds`.
    static func empties(_ directory: String, within microseconds: UInt32) -> Bool {
        var waited: UInt32 = 0
        while waited < microseconds {
            usleep(20_000)
            waited += 20_000
            if !hasProcesses(directory) { return true }
        }
        return false
    }

    static func hasProcesses(_ directory: String) -> Bool {
        guard let text = try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8) else { return false }
        if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return true }
        guard let children = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
        for child in children {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + child, isDirectory: &isDirectory), isDirectory.boolValue,
               hasProcesses(directory + "/" + child) { return true }
        }
        return false
    }

    /// Removes the `imagectl-*.scope` directories that ended containers left: a kill -9 of
    /// imagectl, or processes of a dead PID namespace that left the cgroup only after `remove`
    /// gave up (seen on a loaded machine; with -x's unique names nothing ever reuses them, so they
    /// pile up). Only a scope without any process in it, and older than `minimumAge` seconds: a
    /// run that just made its scope has not joined it yet. Returns the scopes removed.
    @discardableResult
    static func sweepEndedScopes(minimumAge: Double = 60) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return [] }
        let layout = parseLayout(text, unifiedMountExists: access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0)
        guard let hierarchies = try? Self.hierarchies(layout, controllerPaths: controllerPaths(text)) else { return [] }
        return sweepEndedScopes(in: hierarchies, minimumAge: minimumAge)
    }

    private static func sweepEndedScopes(in hierarchies: [Hierarchy], minimumAge: Double = 60) -> [String] {
        let now = time(nil)
        var removed: [String] = []
        for hierarchy in hierarchies {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: hierarchy.parent)) ?? []
            where name.hasPrefix("imagectl-") && name.hasSuffix(".scope") {
                let path = hierarchy.parent + "/" + name
                guard let status = try? FileStatus.stat(path), now - time_t(status.modificationTime.seconds) >= time_t(minimumAge),
                      !hasProcesses(path) else { continue }
                if removeTree(path) { removed.append(path) }
            }
        }
        return removed
    }

    /// Removes the container's cgroups depth-first (the container's own systemd makes children).
    /// Processes of a dead PID namespace take a moment to leave, so EBUSY is retried briefly.
    func remove() { Self.remove(scopes) }

    static func remove(_ directories: [String]) {
        for directory in directories {
            for attempt in 0..<50 {
                if removeTree(directory) { break }
                if attempt < 49 { usleep(20_000) }
            }
        }
    }

    private static func removeTree(_ directory: String) -> Bool {
        if let children = try? FileManager.default.contentsOfDirectory(atPath: directory) {
            for child in children {
                var st = stat()
                let path = directory + "/" + child
                if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { _ = removeTree(path) }
            }
        }
        return rmdir(directory) == 0 || errno == ENOENT
    }
}
