import Foundation
import LinuxSystem

/// A held lock on an image: `<directory>/.#<name>.lck` (an OFD lock, so it dies with the process)
/// plus, for an image that exists, a global one under /run/imagectl/locks keyed by the device and
/// inode of the image, so that the same image reached through two paths (an /etc/machines symlink
/// and the pool) is still one lock. Released by `release()` or when the value goes away.
public final class ImageLock: Sendable {
    public let name: String
    let local: FileLock?
    let global: FileLock?

    /// Directory of the global locks: $IMAGECTL_LOCK_DIR, else /run/imagectl/locks.
    public static var globalDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["IMAGECTL_LOCK_DIR"], !dir.isEmpty { return dir }
        return "/run/imagectl/locks"
    }

    /// The per-image lock file of `name` in `directory`.
    public static func localPath(name: String, directory: String) -> String {
        "\(directory)/.#\(name).lck"
    }

    /// The global lock file for the image at `path` (following a symlink), or nil when the image
    /// cannot be stat'ed.
    static func globalPath(imagePath: String) -> String? {
        guard let status = try? FileStatus.stat(imagePath) else { return nil }
        return "\(globalDirectory)/inode-\(status.device):\(status.inode)"
    }

    init(name: String, local: FileLock?, global: FileLock?) {
        self.name = name
        self.local = local
        self.global = global
    }

    /// Takes the image's locks without waiting. `imagePath` nil: the image does not exist yet (only
    /// the per-name lock). Throws `ImageStore.Error.busy` when someone else holds a conflicting lock.
    /// A directory where no lock file can be made (a read-only vendor directory) gets only the
    /// global lock, and a machine without a writable /run only the local one.
    static func acquire(name: String, directory: String, imagePath: String?, kind: FileLock.Kind) throws -> ImageLock {
        let local: FileLock?
        do {
            guard let lock = try FileLock.tryLock(path: localPath(name: name, directory: directory), kind: kind) else {
                throw ImageStore.Error.busy(name)
            }
            local = lock
        } catch let error as SystemCallError where error.errno == .readOnlyFileSystem || error.errno == .permissionDenied {
            local = nil
        }
        var global: FileLock?
        if let imagePath, let globalPath = globalPath(imagePath: imagePath) {
            do {
                try FileSystem.makeDirectories(globalDirectory, mode: 0o700)
                guard let lock = try FileLock.tryLock(path: globalPath, kind: kind) else {
                    local?.releaseRemovingFile()
                    throw ImageStore.Error.busy(name)
                }
                global = lock
            } catch let error as SystemCallError where error.errno == .readOnlyFileSystem || error.errno == .permissionDenied {
                global = nil
            } catch {
                local?.releaseRemovingFile()
                throw error
            }
        }
        return ImageLock(name: name, local: local, global: global)
    }

    /// Locks an image or directory tree used by path outside the store (`imagectl run -D/-i`), as
    /// systemd-nspawn locks one: the per-name lock beside it (`.#NAME.lck`, NAME without a ".raw"
    /// suffix, so an image of the pool used by path conflicts with the store's own lock) and the
    /// global lock of its inode. Throws `Error.busy(path)` when someone holds a conflicting one.
    public static func lock(path: String, kind: FileLock.Kind) throws -> ImageLock {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var name = url.lastPathComponent
        if name.hasSuffix(".raw") && name.count > 4 { name.removeLast(4) }
        do {
            return try acquire(name: name, directory: url.deletingLastPathComponent().path, imagePath: url.path, kind: kind)
        } catch ImageStore.Error.busy {
            throw ImageStore.Error.busy(path)
        }
    }

    /// Releases both locks, removing the lock files when no one else holds them.
    public func release() {
        global?.releaseRemovingFile()
        local?.releaseRemovingFile()
    }

    deinit {
        release()
    }

    /// Whether someone holds a lock on image `name` in `directory` (or on the image at
    /// `imagePath` globally).
    static func isLocked(name: String, directory: String, imagePath: String?) -> Bool {
        if (try? FileLock.isLocked(path: localPath(name: name, directory: directory))) == true { return true }
        if let imagePath, let globalPath = globalPath(imagePath: imagePath),
           (try? FileLock.isLocked(path: globalPath)) == true { return true }
        return false
    }

    /// Whether someone holds the global lock of the image at `imagePath`.
    static func isGloballyLocked(imagePath: String) -> Bool {
        guard let globalPath = globalPath(imagePath: imagePath) else { return false }
        return (try? FileLock.isLocked(path: globalPath)) == true
    }

    /// The pids holding locks on image `name` (from /proc/locks; -1 when the kernel did not say).
    static func holders(name: String, directory: String, imagePath: String?) -> [Int32] {
        var pids: [Int32] = []
        var files = [localPath(name: name, directory: directory)]
        if let imagePath, let globalPath = globalPath(imagePath: imagePath) { files.append(globalPath) }
        for file in files {
            guard let status = try? FileStatus.lstat(file), (try? FileLock.isLocked(path: file, against: .exclusive)) == true else { continue }
            for pid in FileLock.holders(device: status.device, inode: status.inode) where !pids.contains(pid) {
                pids.append(pid)
            }
        }
        return pids
    }
}
