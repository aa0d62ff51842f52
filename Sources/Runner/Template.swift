import Foundation
import LinuxSystem

/// --template=: the container directory is made from a template the first time, and left alone
/// when it exists (systemd-nspawn(1)).
public enum Template {
    /// Creates `target` from `template` when `target` does not exist; returns true when it did.
    /// A btrfs subvolume template is snapshotted, anything else copied (reflinks where the file
    /// system has them). The copy goes to a hidden sibling first and is renamed into place with
    /// RENAME_NOREPLACE, so a failed or interrupted copy never leaves a half-made target, and two
    /// runs racing for the same target cannot both win.
    @discardableResult
    public static func materialize(_ template: String, at target: String) throws -> Bool {
        if FileSystem.exists(target) { return false }
        guard (try? FileStatus.stat(template))?.kind == .directory else { throw RunnerError.notADirectory(template) }
        let parent = FileSystem.parentDirectory(target)
        let temporary = parent + "/.#" + FileSystem.baseName(target) + "." + UUID().uuidString.prefix(8)
        try FileSystem.makeDirectories(parent)
        let snapshot = (try? Btrfs.isSubvolume(template)) == true && (try? Btrfs.isBtrfs(parent)) == true
        do {
            if snapshot {
                try Btrfs.snapshot(template, to: temporary)
            } else {
                _ = try FileCopy.copyTree(template, to: temporary)
            }
            try Rename.rename(temporary, to: target, flags: .noReplace)
        } catch {
            if snapshot { try? Btrfs.deleteSubvolume(temporary) } else { try? FileSystem.removeTree(temporary) }
            if error.errno == .fileExists, FileSystem.exists(target) { return false }
            throw error
        }
        return true
    }
}
