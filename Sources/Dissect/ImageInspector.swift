import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// Reads os-release, extension-release, hostname, machine ID and the init system from inside an
/// image. Partitions are mounted read-only with the new mount API (fsmount) and attached nowhere:
/// nothing shows up in any mount table, no temp directory is needed, and closing the descriptors
/// unmounts them and (autoclear) detaches their loop devices, on every path including a crash.
///
/// Verity-protected data is mounted for this look without verification: what it returns is for
/// display only, never the basis of a "verified" claim.
public enum ImageInspector {
    /// A tree to look into: the root directory descriptor, and /usr's when /usr is its own mount.
    struct Tree {
        var root: FileDescriptor?
        var usr: FileDescriptor?

        /// Opens `path` (absolute in the image): /usr/... from the usr mount when separate.
        func read(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
            if let usr, path.hasPrefix("/usr/") {
                if let bytes = try? OpenBeneath.readFile(String(path.dropFirst(5)), in: usr, limit: limit) { return bytes }
            }
            guard let root else { return nil }
            return (try? OpenBeneath.readFile(path, in: root, limit: limit)) ?? nil
        }

        func exists(_ path: String) -> Bool {
            if let usr, path.hasPrefix("/usr/"), OpenBeneath.exists(String(path.dropFirst(5)), in: usr) { return true }
            guard let root else { return false }
            return OpenBeneath.exists(path, in: root)
        }

        func entries(_ path: String) -> [String]? {
            if let usr, path.hasPrefix("/usr/"), let names = OpenBeneath.directoryEntries(String(path.dropFirst(5)), in: usr) { return names }
            guard let root else { return nil }
            return OpenBeneath.directoryEntries(path, in: root)
        }
    }

    /// Metadata of a directory tree (no mount needed).
    public static func readMetadata(directory: String, imageName: String) throws -> ImageMetadata {
        let fd = try FileDescriptor.open(FilePath(directory), .readOnly, options: [.directory, .closeOnExec])
        defer { try? fd.close() }
        return metadata(Tree(root: fd, usr: nil), imageName: imageName)
    }

    /// Mounts root (and usr) of `image` privately and reads the metadata. Needs root (loop devices).
    public static func readMetadata(image: DissectedImage) throws -> ImageMetadata {
        var loops: [LoopDevice] = []
        var mounts: [DetachedMount] = []
        defer {
            for m in mounts { m.close() }
            for l in loops { l.close() }
        }
        func mount(_ p: DissectedPartition) throws -> FileDescriptor? {
            guard let fstype = p.fstype, !p.isEncrypted, fstype != "DM_verity_hash", fstype != "swap" else { return nil }
            let loop = try LoopDevice.attach(image.path, LoopDevice.Configuration(offset: p.offset, sizeLimit: p.size, readOnly: true))
            loops.append(loop)
            let m = try DetachedMount(fstype: fstype, source: loop.path, options: MountPlan.dataOptions(fstype: fstype, readOnly: true, designator: p.designator),
                                      readOnly: true, attributes: MountPlan.secureAttributes)
            mounts.append(m)
            return m.descriptor
        }
        var tree = Tree()
        if let root = image.partition(.root) { tree.root = try mount(root) }
        if let usr = image.partition(.usr) { tree.usr = try mount(usr) }
        return metadata(tree, imageName: imageName(image.path))
    }

    /// The name extension-release files are matched against: the file name without `.raw`.
    public static func imageName(_ path: String) -> String {
        var name = URL(fileURLWithPath: path).lastPathComponent
        if name.hasSuffix(".raw") { name.removeLast(4) }
        return name
    }

    static func metadata(_ tree: Tree, imageName: String) -> ImageMetadata {
        var meta = ImageMetadata()
        for path in ["/etc/os-release", "/usr/lib/os-release"] {
            if let bytes = tree.read(path) {
                meta.osRelease = OSRelease.parse(String(decoding: bytes, as: UTF8.self))
                break
            }
        }
        let extensionPath = "/usr/lib/extension-release.d/extension-release.\(imageName)"
        if let bytes = tree.read(extensionPath) {
            meta.extensionRelease = OSRelease.parse(String(decoding: bytes, as: UTF8.self))
        }
        if let bytes = tree.read("/etc/hostname", limit: 4096) {
            let name = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            if let name, !name.isEmpty, !name.hasPrefix("#") { meta.hostname = name }
        }
        if let bytes = tree.read("/etc/machine-id", limit: 4096) {
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.count == 32, text.allSatisfy(\.isHexDigit) { meta.machineID = text.lowercased() }
        }
        meta.hasInitSystem = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd", "/sbin/init"].contains { tree.exists($0) }
        return meta
    }
}
