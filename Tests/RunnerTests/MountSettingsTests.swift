import Foundation
import Testing
@testable import Runner

/// --bind, --bind-ro, --tmpfs, --overlay, --overlay-ro parsed as systemd-nspawn documents them.
@Suite("run mount options")
struct MountSettingsTests {
    @Test func bindForms() throws {
        #expect(try ExtraMount.parseBind("/srv/data", readOnly: false)
                == .bind(source: MountPath(path: "/srv/data", inRoot: false), target: "/srv/data", readOnly: false, recursive: true))
        #expect(try ExtraMount.parseBind("/a:/b:norbind", readOnly: true)
                == .bind(source: MountPath(path: "/a", inRoot: false), target: "/b", readOnly: true, recursive: false))
        #expect(try ExtraMount.parseBind("+/usr/share:/mnt", readOnly: false)
                == .bind(source: MountPath(path: "/usr/share", inRoot: true), target: "/mnt", readOnly: false, recursive: true))
        // Empty source: a temporary directory, made later by RootSession.
        #expect(try ExtraMount.parseBind(":/scratch", readOnly: false)
                == .bind(source: nil, target: "/scratch", readOnly: false, recursive: true))
        // "\:" is a colon inside a path; paths are normalized.
        #expect(try ExtraMount.parseBind("/x\\:y//z/:/t", readOnly: false)
                == .bind(source: MountPath(path: "/x:y/z", inRoot: false), target: "/t", readOnly: false, recursive: true))
    }

    @Test func badBinds() {
        for text in ["relative", "/a:relative", "/a:/b:rootidmap", "/a:/b:rbind:extra", ":", "/a:/", "/a/../etc:/b", "/a:/b/./c"] {
            #expect(throws: MountSettings.Error.self, "\(text)") { try ExtraMount.parseBind(text, readOnly: false) }
        }
    }

    @Test func tmpfsFlagsAndData() throws {
        let plain = try ExtraMount.parseTmpfs("/var")
        #expect(plain == .tmpfs(target: "/var", flags: UInt(MS_NODEV | MS_STRICTATIME), data: "mode=0755"))
        let custom = try ExtraMount.parseTmpfs("/run/x:mode=0700,ro,size=1m,nosuid")
        #expect(custom == .tmpfs(target: "/run/x", flags: UInt(MS_NODEV | MS_STRICTATIME | MS_RDONLY | MS_NOSUID), data: "mode=0700,size=1m"))
        #expect(try ExtraMount.parseTmpfs("/d:dev") == .tmpfs(target: "/d", flags: UInt(MS_STRICTATIME), data: "mode=0755"))
        #expect(throws: MountSettings.Error.self) { try ExtraMount.parseTmpfs("tmp") }
        #expect(throws: MountSettings.Error.self) { try ExtraMount.parseTmpfs("/") }
    }

    @Test func overlayForms() throws {
        let host = { (p: String) in MountPath(path: p, inRoot: false) }
        let inside = { (p: String) in MountPath(path: p, inRoot: true) }
        #expect(try ExtraMount.parseOverlay("/l1:/l2:/up:/dst", readOnly: false)
                == .overlay(lower: [host("/l1"), host("/l2")], upper: host("/up"), work: nil, target: "/dst"))
        // Two paths: LOWER:UPPER, mounted at UPPER's path.
        #expect(try ExtraMount.parseOverlay("/l:+/var", readOnly: false)
                == .overlay(lower: [host("/l")], upper: inside("/var"), work: nil, target: "/var"))
        // Empty upper: a temporary directory.
        #expect(try ExtraMount.parseOverlay("+/var::/var", readOnly: false)
                == .overlay(lower: [inside("/var")], upper: MountPath(path: "", inRoot: false), work: nil, target: "/var"))
        #expect(try ExtraMount.parseOverlay("/a:+/b:/dst", readOnly: true)
                == .overlay(lower: [host("/a"), inside("/b")], upper: nil, work: nil, target: "/dst"))
        for text in ["/only", "/l:", ":/up:/dst", "/l:/u:rel"] {
            #expect(throws: MountSettings.Error.self, "\(text)") { try ExtraMount.parseOverlay(text, readOnly: false) }
        }
    }

    @Test func parentsAreMountedBeforeChildren() throws {
        var settings = MountSettings()
        settings.extra = [
            try ExtraMount.parseBind("/a:/var/lib/x", readOnly: false),
            try ExtraMount.parseTmpfs("/var"),
            try ExtraMount.parseBind("/b:/var-other", readOnly: false),
            try ExtraMount.parseTmpfs("/var/lib"),
        ]
        #expect(settings.orderedMounts.map(\.target) == ["/var", "/var/lib", "/var/lib/x", "/var-other"])
    }

    @Test func machineNameOfAnImage() throws {
        #expect(try MountSettings.machineName(forImage: "/var/lib/machines/web.raw") == "web")
        #expect(try MountSettings.machineName(forImage: "disk image.img") == "diskimage.img")
    }

    /// The set-up plan the child runs: every temporary must have been made first.
    @Test func unresolvedTemporariesAreRefused() throws {
        var input = SetupPlan.Input(directory: "/tree", staging: "/staging")
        input.mounts = [.bind(source: nil, target: "/t", readOnly: false, recursive: true)]
        #expect(throws: SetupPlan.Unresolved(target: "/t")) { try SetupPlan(input) }
        input.mounts = [.overlay(lower: [MountPath(path: "/a", inRoot: false)], upper: MountPath(path: "", inRoot: false), work: nil, target: "/o")]
        #expect(throws: SetupPlan.Unresolved(target: "/o")) { try SetupPlan(input) }
        input.mounts = [try ExtraMount.parseTmpfs("/t"), try ExtraMount.parseOverlay("/a:/b:/c", readOnly: true)]
        let plan = try SetupPlan(input)
        #expect(plan.steps.suffix(2).map(\.operation) == [
            .mount(fstype: "tmpfs", source: "tmpfs", at: "/t", flags: UInt(MS_NODEV | MS_STRICTATIME), data: "mode=0755", mode: 0o755),
            .overlay(target: "/c", lower: [.host("/b"), .host("/a")], upper: nil, work: nil),
        ])
    }
}

@Suite("run --volatile values")
struct VolatileModeTests {
    @Test func modesAndBooleans() throws {
        #expect(try VolatileMode.parse("state") == .state)
        #expect(try VolatileMode.parse("overlay") == .overlay)
        #expect(try VolatileMode.parse("yes") == .yes)
        #expect(try VolatileMode.parse("true") == .yes)
        #expect(try VolatileMode.parse("0") == .no)
        #expect(throws: MountSettings.Error.self) { try VolatileMode.parse("sometimes") }
    }
}
