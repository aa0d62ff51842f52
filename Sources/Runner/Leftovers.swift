import Dissect
import Foundation
import ImageStore
import LinuxSystem

/// What `imagectl run` makes on the host for the life of one container and removes afterwards —
/// the btrfs snapshot of -x, the temporary directories of empty --bind/--overlay sources, overlay
/// work directories, the staging directory an image is mounted on — and how a later run finds
/// the ones a kill -9 left behind without ever touching one a live run still uses.
///
/// Names that other tools could also use (`.#TREE.RAND` beside a tree, as the store names its
/// temporaries) are claimed before they are made: an exclusive OFD lock on
/// `<lock dir>/claim-DEV:INO-NAME` (DEV:INO of the directory they are made in), held by the
/// running imagectl. A claim file nobody holds marks a leftover; no claim file, not ours. The
/// /var/tmp temporaries have a name only imagectl uses (`imagectl-bind-` + 16 hex digits) and are
/// claimed the same way. Staging directories under /run/imagectl/runner carry the PID of the
/// imagectl that made them: gone when that process is.
public enum Leftovers {
    /// `$IMAGECTL_LOCK_DIR` or /run/imagectl/locks, shared with the store's image locks.
    static var claimDirectory: String { ImageLock.globalDirectory }

    static let runnerDirectory = "/run/imagectl/runner"
    static let temporaryDirectory = "/var/tmp"
    static let temporaryPrefixes = ["imagectl-bind-", "imagectl-overlay-"]
    static let workPrefix = ".#imagectl-overlay-work."
    /// Random part of every claimed name: 8 bytes as 16 hex digits.
    static let randomBytes = 8

    /// The claim file of `name` in directory `parent`; nil when `parent` cannot be stat'ed.
    static func claimPath(parent: String, name: String) -> String? {
        guard let status = try? FileStatus.stat(parent) else { return nil }
        return "\(claimDirectory)/claim-\(status.device):\(status.inode)-\(name)"
    }

    /// A fresh name `prefix` + 16 hex digits in `parent`, claimed (the lock is returned; keep it
    /// for as long as the thing exists). The caller makes the file or directory afterwards.
    static func claim(parent: String, prefix: String) throws -> (name: String, lock: FileLock) {
        try FileSystem.makeDirectories(claimDirectory, mode: 0o700)
        for _ in 0..<8 {
            let name = prefix + FileSystem.randomHex(randomBytes)
            guard case .some(.none) = try? FileStatus.lstatIfPresent(parent + "/" + name),
                  let path = claimPath(parent: parent, name: name) else { continue }
            if let lock = try FileLock.tryLock(path: path, kind: .exclusive) { return (name, lock) }
        }
        throw RootSession.Error.temporary("a claimed name \(prefix)… in \(parent)", "no free name found")
    }

    /// Whether `name` has the shape `prefix` + 16 lowercase hex digits.
    static func isClaimedShape(_ name: String, prefix: String) -> Bool {
        guard name.hasPrefix(prefix) else { return false }
        let rest = name.dropFirst(prefix.count)
        return rest.count == randomBytes * 2 && rest.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    /// For a leftover `name` in `parent` (its claim file exists and nobody holds it): the claim,
    /// now held by us, so that nobody starts using the name while it goes. nil: live, or not ours
    /// (`requireClaimFile`), or unreadable.
    static func staleClaim(parent: String, name: String, requireClaimFile: Bool) -> FileLock? {
        guard let path = claimPath(parent: parent, name: name) else { return nil }
        if requireClaimFile && !FileSystem.exists(path) { return nil }
        try? FileSystem.makeDirectories(claimDirectory, mode: 0o700)
        return (try? FileLock.tryLock(path: path, kind: .exclusive, create: !requireClaimFile)) ?? nil
    }

    // MARK: Cleaning

    /// Removes what dead runs left behind that this run can see: snapshots of `source` (-x on a
    /// btrfs subvolume), work directories beside the host upper layers `uppers`, the /var/tmp
    /// temporaries, image staging directories (unmounted first) and empty staging directories of
    /// dead runs. Best effort: a failure leaves the thing for later.
    static func clean(source: String?, uppers: [String], log: (String) -> Void = { _ in }) {
        if let source {
            let parent = FileSystem.parentDirectory(source)
            let prefix = ".#\(FileSystem.baseName(source))."
            for name in (try? FileSystem.entries(parent)) ?? [] where isClaimedShape(name, prefix: prefix) {
                guard let claim = staleClaim(parent: parent, name: name, requireClaimFile: true) else { continue }
                let path = parent + "/" + name
                if (try? Btrfs.isSubvolume(path)) == true {
                    if (try? Btrfs.deleteSubvolume(path, recursive: true)) != nil { log("Removed stale snapshot \(path).") }
                }
                claim.releaseRemovingFile()
            }
        }
        for upper in uppers { cleanWorkDirectories(in: FileSystem.parentDirectory(upper)) }
        for name in (try? FileSystem.entries(temporaryDirectory)) ?? [] {
            guard temporaryPrefixes.contains(where: { isClaimedShape(name, prefix: $0) }),
                  let claim = staleClaim(parent: temporaryDirectory, name: name, requireClaimFile: false) else { continue }
            try? FileSystem.removeTree(temporaryDirectory + "/" + name)
            claim.releaseRemovingFile()
        }
        // Claim files whose thing another tool removed (`imagectl clean` takes a pool image's
        // snapshots); claims of leftovers elsewhere stay (tiny, on tmpfs): they mark those.
        if let source {
            sweepClaims(parent: FileSystem.parentDirectory(source), prefix: ".#\(FileSystem.baseName(source)).")
        }
        for upper in uppers { sweepClaims(parent: FileSystem.parentDirectory(upper), prefix: workPrefix) }
        cleanRunnerDirectory()
    }

    /// For `imagectl clean`: the cgroups (`imagectl-NAME.scope` in every hierarchy) of containers
    /// that ended without removing them (each run sweeps them too, in `CgroupTree.create`).
    /// Returns their paths.
    public static func cleanCgroups() -> [String] { CgroupTree.sweepEndedScopes() }

    /// Removes the claim files of names `prefix`… in `parent` that nobody holds and whose thing
    /// is gone (taking the lock first, so a claim being made right now is never removed).
    static func sweepClaims(parent: String, prefix: String) {
        guard let status = try? FileStatus.stat(parent) else { return }
        let claimPrefix = "claim-\(status.device):\(status.inode)-"
        for file in (try? FileSystem.entries(claimDirectory)) ?? [] where file.hasPrefix(claimPrefix + prefix) {
            let name = String(file.dropFirst(claimPrefix.count))
            guard isClaimedShape(name, prefix: prefix), case .some(.none) = try? FileStatus.lstatIfPresent(parent + "/" + name),
                  let lock = (try? FileLock.tryLock(path: claimDirectory + "/" + file, kind: .exclusive, create: false)) ?? nil else { continue }
            lock.releaseRemovingFile()
        }
    }

    /// Overlay work directories of killed runs in `parent` (a host path, or /proc/self/fd/N of a
    /// directory opened beneath a container root).
    static func cleanWorkDirectories(in parent: String) {
        for name in (try? FileSystem.entries(parent)) ?? [] where isClaimedShape(name, prefix: workPrefix) {
            guard let claim = staleClaim(parent: parent, name: name, requireClaimFile: true) else { continue }
            try? FileSystem.removeTree(parent + "/" + name)
            claim.releaseRemovingFile()
        }
    }

    /// /run/imagectl/runner: `image.PID.RAND` (an image mounted on `root`) and `MACHINE.PID` (the
    /// child's staging mount point, a mount only in the container's namespace) of a PID that is
    /// gone. Never one of a live PID: removing a directory that is a mount point in another
    /// namespace would detach that mount there.
    static func cleanRunnerDirectory() {
        for name in (try? FileSystem.entries(runnerDirectory)) ?? [] {
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            let path = runnerDirectory + "/" + name
            if parts.count == 3, parts[0] == "image", let pid = Int32(parts[1]) {
                guard !ProcessLiveness.isAlive(pid) else { continue }
                let root = path + "/root"
                if !Mount.mounts(under: root).isEmpty { try? ImageMounter.unmount(root) }
                guard Mount.mounts(under: root).isEmpty else { continue }
                HostFiles.removeDirectory(root)
                HostFiles.removeDirectory(path)
            } else if parts.count >= 2, let last = parts.last, let pid = Int32(last), !ProcessLiveness.isAlive(pid) {
                if Mount.mounts(under: path).isEmpty { HostFiles.removeDirectory(path) }
            }
        }
    }
}
