import CShims
import Glibc

/// The extra mounts as the C child reads them (`struct img_container_mount`), in memory owned by
/// this value: strdup'ed strings and malloc'ed arrays, freed when it goes away. The child only
/// reads them (it is a copy of this process), so they must live until `img_container_start`
/// returned.
final class ChildMounts {
    private(set) var table: UnsafeMutablePointer<img_container_mount>?
    let count: Int
    /// strdup'ed strings (freed with free) and allocated arrays (deallocated).
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutableRawPointer] = []

    enum Failure: Error { case unresolved(String) }

    /// `mounts` must be resolved: every temporary source, upper and work directory concrete
    /// (`RootSession` does that).
    /// `idmapBindsByDefault`: a host bind source without idmap/noidmap is ID-mapped (imagectl's
    /// default user namespace, see MountPath.idmap).
    init(_ mounts: [ExtraMount], idmapBindsByDefault: Bool = false) throws {
        count = mounts.count
        guard !mounts.isEmpty else { return }
        let table = UnsafeMutablePointer<img_container_mount>.allocate(capacity: mounts.count)
        table.initialize(repeating: img_container_mount(), count: mounts.count)
        self.table = table
        for (i, mount) in mounts.enumerated() {
            var m = img_container_mount()
            m.target = string(mount.target)
            switch mount {
            case .bind(let source, _, let readOnly, let recursive):
                guard let source else { throw Failure.unresolved("bind source for \(mount.target)") }
                m.kind = IMG_MOUNT_BIND
                m.source = string(source.path)
                m.source_in_root = source.inRoot ? 1 : 0
                m.read_only = readOnly ? 1 : 0
                m.recursive = recursive ? 1 : 0
                m.idmap = (source.idmap ?? (idmapBindsByDefault && !source.inRoot)) ? 1 : 0
            case .tmpfs(_, let flags, let data):
                m.kind = IMG_MOUNT_TMPFS
                m.flags = flags
                m.data = string(data)
            case .overlay(let lower, let upper, let work, _):
                m.kind = IMG_MOUNT_OVERLAY
                // overlayfs lists the topmost lower layer first; the command line the bottom one.
                let layers = Array(lower.reversed())
                let paths = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: layers.count + 1)
                let inRoot = UnsafeMutablePointer<Int32>.allocate(capacity: max(layers.count, 1))
                arrays.append(UnsafeMutableRawPointer(paths))
                arrays.append(UnsafeMutableRawPointer(inRoot))
                for (k, layer) in layers.enumerated() {
                    (paths + k).initialize(to: string(layer.path))
                    (inRoot + k).initialize(to: layer.inRoot ? 1 : 0)
                }
                (paths + layers.count).initialize(to: nil)
                m.lower = UnsafePointer(paths)
                m.lower_in_root = UnsafePointer(inRoot)
                if let upper {
                    guard !upper.path.isEmpty, let work else { throw Failure.unresolved("overlay upper layer for \(mount.target)") }
                    m.upper = string(upper.path)
                    m.upper_in_root = upper.inRoot ? 1 : 0
                    m.work = string(work.path)
                    m.work_in_root = work.inRoot ? 1 : 0
                }
                m.read_only = upper == nil ? 1 : 0
            }
            table[i] = m
        }
    }

    private func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        strings.append(p)
        return UnsafePointer(p)
    }

    deinit {
        strings.forEach { free($0) }
        arrays.forEach { $0.deallocate() }
        table?.deallocate()
    }
}
