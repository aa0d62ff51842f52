import Foundation

/// A compression layer, recognised from its magic bytes (never from a file name suffix).
public enum Compression: String, Sendable, CaseIterable {
    case none, xz, gzip, zstd, bzip2

    /// The compression the stream starting with `head` uses.
    ///
    /// | format | magic (hex)            |
    /// |--------|------------------------|
    /// | xz     | fd 37 7a 58 5a 00      |
    /// | gzip   | 1f 8b                  |
    /// | zstd   | 28 b5 2f fd            |
    /// | bzip2  | 42 5a 68 ('BZh') 31-39 |
    public static func detect(_ head: [UInt8]) -> Compression {
        if head.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .xz }
        if head.starts(with: [0x1F, 0x8B]) { return .gzip }
        if head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        if head.count >= 4, head.starts(with: [0x42, 0x5A, 0x68]), (0x31...0x39).contains(head[3]) { return .bzip2 }
        return .none
    }

    /// A decoder reading the compressed stream from `upstream`.
    func decoder(_ upstream: ByteSource) throws -> ByteSource {
        switch self {
        case .none: upstream
        case .xz: try XZDecoder(upstream: upstream)
        case .gzip: try GzipDecoder(upstream: upstream)
        case .zstd: try ZstdDecoder(upstream: upstream)
        case .bzip2: try Bzip2Decoder(upstream: upstream)
        }
    }
}

/// What a (decompressed) stream holds.
public enum PayloadFormat: String, Sendable {
    case raw, qcow2, tar

    /// Recognises qcow2 ("QFI\xfb") and tar (a ustar header, or an old-style header whose checksum
    /// is right); anything else is raw.
    public static func detect(_ head: [UInt8]) -> PayloadFormat {
        if head.starts(with: [0x51, 0x46, 0x49, 0xFB]) { return .qcow2 }
        if isTarHeader(head) { return .tar }
        return .raw
    }

    /// A 512-byte tar header block, at the start of the stream:
    ///
    /// | offset | size | field                         |
    /// |--------|------|-------------------------------|
    /// | 0      | 100  | name                          |
    /// | 148    | 8    | checksum (octal, then NUL/sp) |
    /// | 257    | 6    | magic "ustar\0" (POSIX) or "ustar " (GNU) |
    ///
    /// The checksum is the sum of all 512 bytes with the checksum field counted as spaces; a v7
    /// header (no magic) is recognised by it.
    static func isTarHeader(_ head: [UInt8]) -> Bool {
        guard head.count >= 512 else { return false }
        let magic = Array(head[257..<263])
        if magic == Array("ustar\0".utf8) || magic == Array("ustar ".utf8) { return true }
        if head[0] == 0 { return false }
        var sum = 0
        for i in 0..<512 { sum += (148..<156).contains(i) ? 32 : Int(head[i]) }
        var stored = 0
        var digits = 0
        for byte in head[148..<156] {
            if byte == 0 || byte == 32 { if digits > 0 { break } else { continue } }
            guard (0x30...0x37).contains(byte) else { return false }
            stored = stored * 8 + Int(byte - 0x30)
            digits += 1
        }
        return digits > 0 && stored == sum
    }
}

/// The local image name derived from a file name (FORMATS.md section 4).
public enum LocalName {
    static let tarSuffixes = [".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tgz", ".tbz2", ".txz", ".tzst", ".tar"]
    // ".tar": import-raw also takes a tar holding one disk image (debian-12-genericcloud-amd64.tar.xz).
    static let rawSuffixes = [".xz", ".gz", ".bz2", ".zst", ".raw", ".qcow2", ".img", ".bin", ".tar"]

    /// For a tar: the last path component with one tar suffix removed.
    public static func forTar(_ path: String) -> String {
        let base = lastComponent(path)
        for suffix in tarSuffixes where base.hasSuffix(suffix) && base.count > suffix.count {
            return String(base.dropLast(suffix.count))
        }
        return base
    }

    /// For a raw image: the last path component with raw and compression suffixes removed
    /// repeatedly ("foo.raw.xz" -> "foo").
    public static func forRaw(_ path: String) -> String {
        var base = lastComponent(path)
        var changed = true
        while changed {
            changed = false
            for suffix in rawSuffixes where base.hasSuffix(suffix) && base.count > suffix.count {
                base = String(base.dropLast(suffix.count))
                changed = true
            }
        }
        return base
    }

    /// The last component of a path, trailing slashes ignored (the default name for import-fs).
    public static func lastComponent(_ path: String) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.reversed().drop(while: { $0 == "/" }).reversed()) : path
        return trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    }
}
