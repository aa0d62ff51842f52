import Foundation
import Testing

/// A facility a privileged test needs. Such a test runs whenever the process is root and the
/// facility exists; otherwise it is skipped with the reason printed, and when
/// IMAGECTL_REQUIRE_PRIVILEGED=1 (as CI sets it) the skip becomes a failure, so a broken machine
/// cannot pass by skipping.
public enum Facility: Sendable, CustomStringConvertible {
    case root
    case loopDevices
    case btrfs
    case tool(String)
    case fixture(String)
    /// A cgroup hierarchy mounted at this path ("/sys/fs/cgroup/devices", the v2 tree).
    case cgroupHierarchy(String)
    /// Kernel device-mapper (dm-verity). Many hosts and CI machines have none, and imagectl must
    /// then refuse clearly: a test checks that refusal there (`Privileged.has`), not a skip.
    case deviceMapper

    public var description: String {
        switch self {
        case .root: "root"
        case .loopDevices: "loop devices (/dev/loop-control)"
        case .btrfs: "btrfs (mkfs.btrfs and kernel support)"
        case .tool(let name): "the tool \(name)"
        case .fixture(let name): "the fixture \(name) (run fixtures/build.sh)"
        case .cgroupHierarchy(let path): "a cgroup hierarchy at \(path)"
        case .deviceMapper: "device-mapper"
        }
    }

    /// Why the facility is missing, or nil when it is there.
    var missingReason: String? {
        switch self {
        case .root:
            return geteuid() == 0 ? nil : "not running as root"
        case .loopDevices:
            return FileManager.default.fileExists(atPath: "/dev/loop-control") ? nil : "no /dev/loop-control"
        case .btrfs:
            let fs = (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? ""
            if Tool.path("mkfs.btrfs") == nil { return "mkfs.btrfs not installed" }
            // The module loads on first mount; /proc/filesystems lists it only once loaded.
            if !fs.contains("btrfs") && !FileManager.default.fileExists(atPath: "/sys/module/btrfs")
                && (try? Tool.run("/sbin/modprobe", ["btrfs"]).status) != 0 {
                return "kernel has no btrfs"
            }
            return nil
        case .tool(let name):
            return Tool.path(name) == nil ? "\(name) not installed" : nil
        case .fixture(let name):
            return Fixtures.path(name) == nil ? "fixture \(name) not built (run fixtures/build.sh)" : nil
        case .cgroupHierarchy(let path):
            return FileManager.default.fileExists(atPath: path + "/cgroup.procs") ? nil : "the host has no cgroup hierarchy at \(path)"
        case .deviceMapper:
            // The node alone is no proof (libdevmapper creates it itself): the kernel must have
            // registered the misc device too.
            guard FileManager.default.fileExists(atPath: "/dev/mapper/control") else { return "no /dev/mapper/control" }
            let misc = (try? String(contentsOfFile: "/proc/misc", encoding: .utf8)) ?? ""
            return misc.split(separator: "\n").contains { $0.hasSuffix(" device-mapper") } ? nil : "the kernel has not registered device-mapper (/proc/misc)"
        }
    }
}

public enum Privileged {
    /// True when CI asked for every privileged test to run.
    public static var required: Bool {
        ProcessInfo.processInfo.environment["IMAGECTL_REQUIRE_PRIVILEGED"] == "1"
    }

    /// Returns when every facility is there; otherwise skips the current test (printing why), or
    /// fails it when IMAGECTL_REQUIRE_PRIVILEGED=1.
    public static func require(_ facilities: Facility..., sourceLocation: SourceLocation = #_sourceLocation) throws {
        for facility in facilities {
            guard let reason = facility.missingReason else { continue }
            let text = "needs \(facility): \(reason)"
            if required {
                Issue.record(Comment(rawValue: "IMAGECTL_REQUIRE_PRIVILEGED=1 but this test \(text)"), sourceLocation: sourceLocation)
                throw MissingFacility(text: text)
            }
            FileHandle.standardError.write(Data("skip: \(text)\n".utf8))
            try Test.cancel(Comment(rawValue: "skipped: \(text)"), sourceLocation: sourceLocation)
        }
    }
}

extension Privileged {
    /// For a facility that the code under test must handle either way, using it where the host
    /// has it and refusing clearly where not: true when it is there. Where it is missing the
    /// test checks the refusal instead, so this is no skip and is allowed under
    /// IMAGECTL_REQUIRE_PRIVILEGED=1; which branch ran is printed with the reason.
    public static func has(_ facility: Facility) -> Bool {
        guard let reason = facility.missingReason else { return true }
        FileHandle.standardError.write(Data("note: without \(facility) (\(reason)): checking the refusal instead\n".utf8))
        return false
    }
}

struct MissingFacility: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}
