import CShims
import Foundation
import Glibc

/// The container's own cgroup: a child of imagectl's cgroup in every writable hierarchy it will
/// see (the named "systemd" v1 hierarchy and the v2 tree on a legacy/hybrid host, or the single v2
/// tree), created before start and removed after. The cgroup namespace the child unshares right
/// after joining it makes it the container's "/". v1 controller hierarchies stay where imagectl is
/// and are mounted read-only inside, as nspawn does.
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

    static func hostLayout() throws -> HostLayout {
        let text = try String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)
        let unifiedMount = access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0
        return parseLayout(text, unifiedMountExists: unifiedMount)
    }

    let layout: HostLayout
    /// Host directories of the container's cgroup, deepest hierarchy-specific path each.
    let directories: [String]

    /// Creates `imagectl-NAME.scope` under imagectl's cgroup in each writable hierarchy. An
    /// existing one with processes in it means the machine runs already.
    static func create(machine: String) throws -> CgroupTree {
        let layout = try hostLayout()
        var bases: [(mount: String, path: String)] = []
        if layout.unified {
            bases.append(("/sys/fs/cgroup", layout.unifiedPath ?? "/"))
        } else {
            guard let systemdPath = layout.systemdPath else {
                throw RunnerError.startFailed(step: "the host has no name=systemd cgroup hierarchy", errno: ENOENT)
            }
            bases.append(("/sys/fs/cgroup/systemd", systemdPath))
            if layout.hybrid, let unifiedPath = layout.unifiedPath { bases.append(("/sys/fs/cgroup/unified", unifiedPath)) }
        }
        var created: [String] = []
        for base in bases {
            let parent = base.mount + (base.path == "/" ? "" : base.path)
            let directory = parent + "/imagectl-\(machine).scope"
            if mkdir(directory, 0o755) != 0 {
                let code = errno
                guard code == EEXIST else {
                    Self.remove(created)
                    throw RunnerError.startFailed(step: "mkdir \(directory)", errno: code)
                }
                // The processes of a container that just ended leave its cgroup a moment after
                // imagectl saw PID 1 exit (more so on a loaded machine, where remove() may have
                // given up): give them two seconds before calling the name taken. A machine that
                // really runs is normally caught earlier, by the registry.
                if Self.hasProcesses(directory) && !Self.empties(directory, within: 2_000_000) {
                    Self.remove(created)
                    throw RunnerError.alreadyRunning(machine)
                }
            }
            created.append(directory)
        }
        return CgroupTree(layout: layout, directories: created)
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

    /// Removes the container's cgroups depth-first (the container's own systemd makes children).
    /// Processes of a dead PID namespace take a moment to leave, so EBUSY is retried briefly.
    func remove() { Self.remove(directories) }

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
