import Foundation

/// Writes a stream to a file, leaving every all-zero 4 KiB block as a hole (FORMATS.md section 4:
/// raw output is written sparse). Blocks are aligned to file offsets, so the file system allocates
/// exactly the blocks holding data; systemd-import seeks over zero runs of 64 bytes or more, which
/// allocates the same blocks at the file system's 4 KiB granularity. The final size is set with
/// ftruncate, so trailing zeros cost nothing either.
package final class SparseWriter {
    static let blockSize = 4096

    private let file: OutputFile
    package private(set) var size: UInt64 = 0
    private(set) var dataBytes: UInt64 = 0

    package init(file: OutputFile) { self.file = file }

    /// Copies `source` to the file from the current position until the source ends.
    func copy(from source: ByteSource, chunkSize: Int = 4 << 20) throws {
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var ended = false
        while !ended {
            var filled = try source.read(into: &buffer)
            if filled == 0 { break }
            // Fill the chunk completely so that block boundaries stay aligned to the file.
            while filled < chunkSize {
                let n = try readTail(source, into: &buffer, from: filled)
                if n == 0 {
                    ended = true
                    break
                }
                filled += n
            }
            try write(buffer, count: filled)
        }
    }

    /// Reads into `buffer[start...]` through a scratch array (ByteSource fills from index 0).
    private var scratch: [UInt8] = []
    private func readTail(_ source: ByteSource, into buffer: inout [UInt8], from start: Int) throws -> Int {
        let want = buffer.count - start
        if scratch.count != want { scratch = [UInt8](repeating: 0, count: want) }
        let n = try source.read(into: &scratch)
        if n > 0 { buffer.replaceSubrange(start..<(start + n), with: scratch[0..<n]) }
        return n
    }

    /// Writes `buffer[0..<count]` at the current position, skipping all-zero blocks.
    func write(_ buffer: [UInt8], count: Int) throws {
        var runStart: Int? = nil
        var offset = 0
        while offset < count {
            let end = min(offset + Self.blockSize, count)
            if ByteScan.isZero(buffer, offset..<end) {
                if let start = runStart {
                    try file.write(buffer, range: start..<offset, at: size + UInt64(start))
                    dataBytes += UInt64(offset - start)
                    runStart = nil
                }
            } else if runStart == nil {
                runStart = offset
            }
            offset = end
        }
        if let start = runStart {
            try file.write(buffer, range: start..<count, at: size + UInt64(start))
            dataBytes += UInt64(count - start)
        }
        size += UInt64(count)
    }

    /// Leaves `count` bytes of hole (a cluster that reads as zeros).
    func skip(_ count: UInt64) { size += count }

    /// Sets the final size (holes at the end included) and flushes to disk.
    package func finish() throws {
        try file.truncate(to: size)
        try file.sync()
    }
}
