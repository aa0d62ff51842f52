import Foundation
import LinuxSystem

/// The files that live next to an image and move with it on rename, clone and remove
/// (FORMATS.md §3): nspawn settings, verity data for / and /usr, and imagectl's own metadata.
/// For `NAME.raw` they are `NAME.<suffix>`; for a directory `NAME`, `NAME.<suffix>` too.
public enum SideFiles {
    /// The metadata file imagectl writes (provenance). It is a regular file without `.raw`, so
    /// `list` never takes it for an image.
    public static let metadataSuffix = ".imagectl.json"

    /// Every suffix that moves with an image.
    public static let suffixes = [".nspawn", ".roothash", ".roothash.p7s", ".usrhash", ".usrhash.p7s", ".verity", metadataSuffix, OCIMetadata.suffix]

    /// The side files of `image` that exist, as (suffix, path).
    public static func present(for image: Image) -> [(suffix: String, path: String)] {
        present(base: image.sideFileBase)
    }

    static func present(base: String) -> [(suffix: String, path: String)] {
        suffixes.compactMap { suffix in
            let path = base + suffix
            return FileSystem.exists(path) ? (suffix, path) : nil
        }
    }
}

/// imagectl's own per-image metadata, kept in `NAME.imagectl.json`.
struct Metadata: Codable, Equatable {
    var provenance: Provenance?

    static func path(base: String) -> String { base + SideFiles.metadataSuffix }

    static func read(_ image: Image) -> Metadata? { read(base: image.sideFileBase) }

    static func read(base: String) -> Metadata? {
        guard let bytes = try? FileSystem.readFile(path(base: base), limit: 1 << 20) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(Metadata.self, from: Data(bytes))
    }

    func write(base: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(self)
        try FileSystem.writeFileAtomically(Metadata.path(base: base), bytes: Array(data) + [0x0a], mode: 0o644)
    }
}
