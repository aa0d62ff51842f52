import Foundation
import LinuxSystem
import Machines

/// cloud-init's NoCloud seed for a VM: a small vfat volume labelled CIDATA holding user-data,
/// meta-data and network-config (mkfs.vfat from dosfstools, mcopy from mtools: Debian packages
/// imagectl already uses), attached read-only, plus the SMBIOS type 1 serial `ds=nocloud`, with
/// which cloud-init (ds-identify) picks NoCloud without probing other datasources. vfat rather
/// than ISO 9660: cloud-init reads both, and no extra tool (xorriso) is needed.
///
/// The volume lives under the runtime directory ($IMAGECTL_RUNTIME_DIR/cloud-init/PID.img, PID
/// being imagectl's), not in the VM's workspace, so that a VM whose imagectl was killed leaves
/// it where the next `imagectl vm` finds it: `prepare` removes every seed whose imagectl is gone.
/// `PreparedVM.cleanUp` removes the VM's own when it ends.
public enum CloudInitSeed {
    static var directory: String { RuntimeDirectory.path + "/cloud-init" }

    /// The volume's path for this imagectl.
    static var path: String { directory + "/\(ProcessInfo.processInfo.processIdentifier).img" }

    /// Makes the volume; returns its path.
    static func make(_ data: CloudInitData) throws(VMError) -> String {
        do {
            try FileSystem.makeDirectories(directory, mode: 0o700)
        } catch {
            throw .setupFailed("--cloud-init: cannot create \(directory): \(error)")
        }
        removeStale()
        let image = path
        let staging = directory + "/\(ProcessInfo.processInfo.processIdentifier).d"
        try? FileManager.default.removeItem(atPath: staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        do {
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try data.write(to: staging)
        } catch {
            throw .setupFailed("--cloud-init: cannot stage the seed files in \(staging): \(error)")
        }
        // Room for the files (user-data up to 1 MiB each) plus FAT12's own blocks.
        let payload = data.files.reduce(0) { $0 + $1.contents.count }
        let kibibytes = 1024 + (payload + 1023) / 1024 * 2
        unlink(image)
        do {
            try VirtualMachine.runTool("mkfs.vfat", ["-C", "-n", "CIDATA", image, String(kibibytes)])
            for file in data.files {
                try VirtualMachine.runTool("mcopy", ["-i", image, staging + "/" + file.name, "::/" + file.name], environment: ["MTOOLS_SKIP_CHECK": "1"])
            }
        } catch {
            unlink(image)
            throw error
        }
        return image
    }

    /// For a container (`imagectl run`): the directory its seed files go to, bound read-only
    /// at /run/host/cloud-init; stale seeds are removed first. The caller makes it.
    public static func containerDirectory() -> String {
        removeStale()
        return directory + "/\(ProcessInfo.processInfo.processIdentifier).d"
    }

    /// Removes the seed of this imagectl (a container's directory, a VM's volume).
    public static func removeOwn() {
        try? FileManager.default.removeItem(atPath: directory + "/\(ProcessInfo.processInfo.processIdentifier).d")
    }

    /// Seeds of imagectl processes that no longer exist (killed with -9: nothing removed them).
    /// Every `imagectl vm` and `imagectl run` calls it, with cloud-init data or not.
    public static func removeStale() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            let stem = name.hasSuffix(".img") ? String(name.dropLast(4)) : name.hasSuffix(".d") ? String(name.dropLast(2)) : ""
            guard let pid = Int32(stem), pid > 0, kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    /// What qemu gets for a seed: the volume read-only (the guest cannot change what it was
    /// given) and the NoCloud hint in SMBIOS.
    static func arguments(seed: String?) -> [String] {
        guard let seed else { return [] }
        return ["-drive", "file=\(QEMUCommand.escapeOptionValue(seed)),format=raw,if=virtio,readonly=on",
                "-smbios", "type=1,serial=ds=nocloud"]
    }
}
