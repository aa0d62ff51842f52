import Foundation
import Testing
import TestSupport
@testable import Import

@Suite("Decompression")
struct DecoderTests {
    static let tools: [(Compression, String)] = [
        (.xz, "xz -c"), (.gzip, "gzip -c"), (.zstd, "zstd -q -c"), (.bzip2, "bzip2 -c"),
    ]

    @Test("each format decodes back to the original, detected by magic not suffix")
    func roundTrip() throws {
        let dir = try TemporaryDirectory()
        let original = Sample.bytes(3 << 20)
        try Sample.write(original, to: dir.appending("in"))
        for (compression, command) in Self.tools {
            // A misleading suffix: detection must not look at it.
            let path = dir.appending("\(compression.rawValue).img")
            try Sample.sh("\(command) \(dir.appending("in")) > \(path)")
            let (detected, bytes) = try decodeFile(path)
            #expect(detected == compression)
            #expect(bytes == original, "\(compression) round trip")
        }
        let (plain, bytes) = try decodeFile(dir.appending("in"))
        #expect(plain == Compression.none)
        #expect(bytes == original)
    }

    @Test("multi-block xz (several blocks, decoded by the threaded decoder) and concatenated gzip")
    func multiBlockAndMultiMember() throws {
        let dir = try TemporaryDirectory()
        let original = Sample.bytes(5 << 20, seed: 7)
        try Sample.write(original, to: dir.appending("in"))
        try Sample.sh("xz -T2 --block-size=1MiB -c \(dir.appending("in")) > \(dir.appending("m.xz"))")
        let blocks = try Sample.sh("xz --robot -l \(dir.appending("m.xz")) | awk '$1==\"totals\"{print $3}'")
        #expect(Int(blocks.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 >= 5)
        #expect(try decodeFile(dir.appending("m.xz")).1 == original)

        // gzip members and xz streams concatenated: the whole concatenation is the content.
        try Sample.sh("head -c 1000000 \(dir.appending("in")) | gzip -c > \(dir.appending("c.gz")); tail -c +1000001 \(dir.appending("in")) | gzip -c >> \(dir.appending("c.gz"))")
        #expect(try decodeFile(dir.appending("c.gz")).1 == original)
        try Sample.sh("head -c 1000000 \(dir.appending("in")) | xz -c > \(dir.appending("c.xz")); tail -c +1000001 \(dir.appending("in")) | xz -c >> \(dir.appending("c.xz"))")
        #expect(try decodeFile(dir.appending("c.xz")).1 == original)
    }

    @Test("a truncated stream fails naming the format and the cause (SECURITY 7)")
    func truncated() throws {
        let dir = try TemporaryDirectory()
        try Sample.write(Sample.bytes(2 << 20, seed: 3), to: dir.appending("in"))
        for (compression, command) in Self.tools {
            let full = dir.appending("full.\(compression.rawValue)")
            let cut = dir.appending("cut.\(compression.rawValue)")
            try Sample.sh("\(command) \(dir.appending("in")) > \(full)")
            let size = try FileManager.default.attributesOfItem(atPath: full)[.size] as! Int
            try Sample.sh("head -c \(size - 50) \(full) > \(cut)")
            do {
                _ = try decodeFile(cut)
                Issue.record("truncated \(compression) decoded without error")
            } catch {
                let text = String(describing: error)
                let name = compression == .zstd ? "zstd" : compression.rawValue
                #expect(text.contains(name), "\(text)")
                #expect(text.contains("ends early") || text.contains("corrupt") || text.contains("truncated"), "\(text)")
            }
        }
    }

    @Test("a flipped bit in xz payload fails the integrity check")
    func bitFlip() throws {
        let dir = try TemporaryDirectory()
        try Sample.write(Sample.bytes(1 << 20, seed: 5), to: dir.appending("in"))
        try Sample.sh("xz -c \(dir.appending("in")) > \(dir.appending("a.xz"))")
        var bytes = try Sample.read(dir.appending("a.xz"))
        bytes[bytes.count / 2] ^= 0x10
        try Sample.write(bytes, to: dir.appending("b.xz"))
        #expect {
            _ = try decodeFile(dir.appending("b.xz"))
        } throws: { error in
            String(describing: error).hasPrefix("xz stream is corrupt")
        }
        // gzip and zstd: same for their checksums.
        try Sample.sh("gzip -c \(dir.appending("in")) > \(dir.appending("a.gz")); zstd -q --check -c \(dir.appending("in")) > \(dir.appending("a.zst"))")
        for name in ["a.gz", "a.zst"] {
            var data = try Sample.read(dir.appending(name))
            data[data.count - 6] ^= 0x01  // inside the trailing checksum
            try Sample.write(data, to: dir.appending("bad-" + name))
            #expect(throws: (any Error).self) { _ = try decodeFile(dir.appending("bad-" + name)) }
        }
    }

    @Test("the size cap stops a decompression bomb (SECURITY 6)")
    func bomb() throws {
        let dir = try TemporaryDirectory()
        // 256 MiB of zeros compress to a few KiB.
        try Sample.sh("head -c 268435456 /dev/zero | xz -T2 -c > \(dir.appending("bomb.xz"))")
        let peek = PeekSource(try InputFile(path: dir.appending("bomb.xz")))
        let limited = LimitedSource(try Compression.detect(try peek.peek(6)).decoder(peek), limit: 16 << 20, what: "the decompressed image")
        #expect {
            _ = try drain(limited)
        } throws: { error in
            String(describing: error).contains("exceeds the size limit of 16777216 bytes")
        }
    }

    @Test("payload detection: qcow2 magic, ustar and v7 tar headers, else raw")
    func payloadDetection() throws {
        let dir = try TemporaryDirectory()
        try Sample.sh("cd \(dir.path) && echo hi > f && tar --format=ustar -cf u.tar f && tar --format=v7 -cf v.tar f && tar --format=gnu -cf g.tar f")
        for name in ["u.tar", "v.tar", "g.tar"] {
            #expect(PayloadFormat.detect(Array(try Sample.read(dir.appending(name)).prefix(512))) == .tar, "\(name)")
        }
        #expect(PayloadFormat.detect([0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3]) == .qcow2)
        #expect(PayloadFormat.detect([UInt8](repeating: 0, count: 4096)) == .raw)
        var noise = Sample.bytes(512)
        noise[148] = 0x30
        #expect(PayloadFormat.detect(noise) == .raw)
    }

    @Test("local names per FORMATS.md section 4")
    func names() {
        #expect(LocalName.forRaw("/x/debian.raw.xz") == "debian")
        #expect(LocalName.forRaw("fedora.qcow2.gz") == "fedora")
        #expect(LocalName.forRaw("a.img.bin.zst") == "a")
        #expect(LocalName.forRaw("foo.iso") == "foo.iso")
        #expect(LocalName.forRaw("debian-12-genericcloud-amd64.tar.xz") == "debian-12-genericcloud-amd64")
        #expect(LocalName.forTar("/x/tree.tar.xz") == "tree")
        #expect(LocalName.forTar("tree.tgz") == "tree")
        #expect(LocalName.forTar("tree.tar.raw") == "tree.tar.raw")
        #expect(LocalName.lastComponent("/srv/trees/os/") == "os")
    }
}
