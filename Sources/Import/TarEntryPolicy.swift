import Foundation

/// The checks imagectl makes on every tar entry BEFORE libarchive writes it (SECURITY.md 1-4).
/// libarchive's own guards (SECURE_NODOTDOT, SECURE_SYMLINKS) stay on as a second line.
///
/// Unlike Debian's systemd-import 252, which strips a leading `/` and extracts such entries,
/// imagectl refuses an archive with an absolute path: a well-made OS tarball never has one, and
/// one that does was made carelessly or with intent.
package struct TarEntryPolicy {
    /// systemd's bound for directory nesting in an extracted tree.
    package static let maximumDepth = 128

    enum Error: Swift.Error, CustomStringConvertible {
        case absolutePath(String)
        case parentComponent(String)
        case tooDeep(String, Int)
        case emptyPath
        case hardlinkOutside(String, String)
        case hardlinkToDirectory(String, String)
        case hardlinkMissing(String, String)
        case throughSymlink(String, String)

        var description: String {
            switch self {
            case .absolutePath(let p): "tar entry has an absolute path: \(p)"
            case .parentComponent(let p): "tar entry path contains '..': \(p)"
            case .tooDeep(let p, let depth): "tar entry is nested \(depth) levels deep (limit \(TarEntryPolicy.maximumDepth)): \(p.prefix(200))..."
            case .emptyPath: "tar entry has an empty path"
            case .hardlinkOutside(let p, let t): "hard link \(p) points outside the tree: \(t)"
            case .hardlinkToDirectory(let p, let t): "hard link \(p) points at a directory: \(t)"
            case .hardlinkMissing(let p, let t): "hard link \(p) points at \(t), which is not in the archive before it"
            case .throughSymlink(let p, let link): "tar entry \(p) would be written through the symlink \(link)"
            }
        }
    }

    let probe: TreeProbe

    package init(probe: TreeProbe) { self.probe = probe }

    /// Returns the entry's normalised relative path (and hard link target), or throws to refuse
    /// the whole archive.
    package func check(_ header: TarEntryHeader) throws -> (path: [UInt8], hardlink: [UInt8]?) {
        let path = try Self.normalise(header.path)
        if path.isEmpty && header.kind != .directory { throw Error.emptyPath }
        try refuseSymlinkParents(of: path, entry: path)
        guard header.kind == .hardlink, let rawTarget = header.hardlinkTarget else { return (path, nil) }
        let target: [UInt8]
        do {
            target = try Self.normalise(rawTarget)
        } catch Error.absolutePath, Error.parentComponent {
            throw Error.hardlinkOutside(Self.show(path), Self.show(rawTarget))
        }
        if target.isEmpty { throw Error.hardlinkToDirectory(Self.show(path), Self.show(rawTarget)) }
        try refuseSymlinkParents(of: target, entry: path)
        switch probe.kind(of: target) {
        case .directory: throw Error.hardlinkToDirectory(Self.show(path), Self.show(rawTarget))
        case nil: throw Error.hardlinkMissing(Self.show(path), Self.show(rawTarget))
        case .symlink, .other: return (path, target)
        }
    }

    /// Splits on `/`, drops empty and `.` components; refuses a leading `/`, any `..`, and more
    /// than `maximumDepth` components.
    package static func normalise(_ path: [UInt8]) throws -> [UInt8] {
        let slash = UInt8(ascii: "/")
        if path.first == slash { throw Error.absolutePath(show(path)) }
        var components: [ArraySlice<UInt8>] = []
        for component in path.split(separator: slash, omittingEmptySubsequences: true) {
            if component.elementsEqual([UInt8(ascii: ".")]) { continue }
            if component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { throw Error.parentComponent(show(path)) }
            components.append(component)
        }
        if components.count > maximumDepth { throw Error.tooDeep(show(path), components.count) }
        return Array(components.joined(separator: [slash]))
    }

    /// Refuses when a directory on the way to `path` is a symlink already extracted.
    private func refuseSymlinkParents(of path: [UInt8], entry: [UInt8]) throws {
        let slash = UInt8(ascii: "/")
        var index = path.startIndex
        while let next = path[index...].firstIndex(of: slash) {
            let prefix = Array(path[..<next])
            switch probe.kind(of: prefix) {
            case .symlink: throw Error.throughSymlink(Self.show(entry), Self.show(prefix))
            case nil: return  // nothing deeper exists yet
            case .directory, .other: break
            }
            index = next + 1
        }
    }

    static func show(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}
