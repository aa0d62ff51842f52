import Foundation
import Testing
import TestSupport
@testable import Import

/// Converts a qcow2 file with imagectl's reader into `output`.
func convertQCOW2(_ path: String, to output: String, maximumSize: UInt64 = 64 << 30) throws {
    FileManager.default.createFile(atPath: output, contents: nil)
    let input = try InputFile(path: path)
    let image = try QCOW2Image(file: input, fileSize: try input.status().size, maximumVirtualSize: maximumSize)
    let writer = SparseWriter(file: try OutputFile(path: output))
    try image.convert(file: input, to: writer, cancelled: {})
    try writer.finish()
}

func allocatedBytes(_ path: String) throws -> UInt64 {
    UInt64(try Sample.sh("stat -c %b \(path)").trimmingCharacters(in: .whitespacesAndNewlines))! * 512
}

@Suite("qcow2")
struct QCOW2Tests {
    /// A raw disk with data, zero clusters and unwritten space.
    static func makeRaw(_ path: String) throws {
        var bytes = Sample.bytes(6 << 20, seed: 11)
        bytes += [UInt8](repeating: 0, count: 2 << 20)
        try Sample.write(bytes, to: path)
        try Sample.sh("truncate -s 16M \(path)")
    }

    @Test("conversions equal qemu-img's raw output: zlib, zstd, uncompressed v3 and v2, odd cluster sizes",
          arguments: [
            "-c -O qcow2",
            "-c -O qcow2 -o compression_type=zstd",
            "-O qcow2",
            "-O qcow2 -o compat=0.10",
            "-c -O qcow2 -o cluster_size=4096",
            "-c -O qcow2 -o cluster_size=2M,compression_type=zstd",
            "-O qcow2 -o cluster_size=512",
          ])
    func matchesQemuImg(options: String) throws {
        try Privileged.require(.tool("qemu-img"))
        let dir = try TemporaryDirectory()
        try Self.makeRaw(dir.appending("src.raw"))
        try Sample.sh("qemu-img convert -f raw \(options) \(dir.appending("src.raw")) \(dir.appending("a.qcow2"))")
        try Sample.sh("qemu-img convert -f qcow2 -O raw \(dir.appending("a.qcow2")) \(dir.appending("qemu.raw"))")
        try convertQCOW2(dir.appending("a.qcow2"), to: dir.appending("ours.raw"))
        try Sample.sh("cmp \(dir.appending("qemu.raw")) \(dir.appending("ours.raw"))")
        // Unallocated and zero clusters become holes.
        #expect(try allocatedBytes(dir.appending("ours.raw")) <= 8 << 20)
    }

    @Test("hostile headers and tables are refused with a clear error (SECURITY 10)",
          arguments: [
            ("l1-past-eof", "L1 table at offset"),
            ("l2-past-eof", "L2 table at offset"),
            ("huge-size", "exceeds the size limit"),
            ("cluster-bits-high", "cluster_bits 31 is out of range"),
            ("cluster-bits-low", "cluster_bits 8 is out of range"),
            ("encrypted", "encrypted"),
            ("refcount-past-eof", "refcount table is invalid"),
            ("refcount-order", "refcount_order 9"),
            ("unknown-incompatible", "unknown bits"),
            ("l1-huge", "larger than 32 MiB"),
            ("compressed-past-eof", "compressed cluster at offset"),
            ("compressed-garbage", "compressed cluster at offset 8 is corrupt"),
            ("backing", "has a backing file"),
          ])
    func hostile(sample: String, message: String) throws {
        try Privileged.require(.tool("qemu-img"), .tool("python3"))
        let dir = try TemporaryDirectory()
        try Sample.sh("python3 \(Fixtures.repositoryPath("hostile/make-hostile.py")) \(dir.appending("s")) \(dir.appending("outside"))")
        #expect {
            try convertQCOW2(dir.appending("s/\(sample).qcow2"), to: dir.appending("out.raw"))
        } throws: { error in
            String(describing: error).contains(message)
        }
        // The reference image itself converts fine (the patches are what break it).
        try convertQCOW2(dir.appending("s/q-base.qcow2"), to: dir.appending("base.raw"))
        try Sample.sh("cmp \(dir.appending("s/q-source.raw")) \(dir.appending("base.raw"))")
    }

    @Test("tables pointing at the header cluster ('loops') convert with bounded output")
    func tableLoop() throws {
        try Privileged.require(.tool("qemu-img"), .tool("python3"))
        let dir = try TemporaryDirectory()
        try Sample.sh("python3 \(Fixtures.repositoryPath("hostile/make-hostile.py")) \(dir.appending("s")) \(dir.appending("outside"))")
        try convertQCOW2(dir.appending("s/l2-loop.qcow2"), to: dir.appending("out.raw"))
        let size = try FileManager.default.attributesOfItem(atPath: dir.appending("out.raw"))[.size] as! UInt64
        #expect(size == 8 << 20)  // the virtual size, no more
        // qemu-img reads the same tables the same way.
        try Sample.sh("qemu-img convert -f qcow2 -O raw \(dir.appending("s/l2-loop.qcow2")) \(dir.appending("qemu.raw"))")
        try Sample.sh("cmp \(dir.appending("qemu.raw")) \(dir.appending("out.raw"))")
    }
}
