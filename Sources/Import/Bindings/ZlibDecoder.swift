// gzip streams (multi-member, as gzip(1) writes them when files are concatenated) and the raw
// deflate clusters of qcow2, through zlib's inflate.
import CZlib
import Foundation

/// Decompresses a gzip stream read from `upstream`.
package final class GzipDecoder: ByteSource {
    private var stream = z_stream()
    private var input: DecoderInput
    /// True between members: the previous member ended and no byte of the next one was read yet.
    private var atMemberBoundary = false

    public init(upstream: ByteSource) throws {
        input = DecoderInput(upstream: upstream, capacity: 1 << 20)
        // inflateInit2 is a macro; the function behind it takes the version and struct size.
        // windowBits 15 + 32: a zlib or gzip header, detected automatically.
        let ret = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard ret == Z_OK else { throw DecompressionError(format: "gzip", kind: .setup("zlib error \(ret)")) }
    }

    deinit { inflateEnd(&stream) }

    public func read(into buffer: inout [UInt8]) throws -> Int {
        let capacity = buffer.count
        while true {
            try input.refillIfConsumed()
            if input.exhausted {
                if atMemberBoundary { return 0 }
                throw DecompressionError(format: "gzip", kind: .truncated)
            }
            let available = input.available
            let position = input.position
            // inflate keeps no pointer to the caller's buffers between calls.
            let (ret, consumed, produced, message) = input.buffer.withUnsafeMutableBytes { inRaw in
                buffer.withUnsafeMutableBytes { outRaw in
                    stream.next_in = inRaw.baseAddress!.assumingMemoryBound(to: Bytef.self) + position
                    stream.avail_in = uInt(available)
                    stream.next_out = outRaw.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(capacity)
                    let ret = inflate(&stream, Z_NO_FLUSH)
                    let message = stream.msg.map { String(cString: $0) }
                    let result = (ret, available - Int(stream.avail_in), capacity - Int(stream.avail_out), message)
                    stream.next_in = nil
                    stream.next_out = nil
                    return result
                }
            }
            input.position += consumed
            if consumed > 0 { atMemberBoundary = false }
            switch ret {
            case Z_OK, Z_BUF_ERROR:
                if produced > 0 { return produced }
            case Z_STREAM_END:
                // Another member may follow: reset and go on with the same input.
                atMemberBoundary = true
                guard inflateReset(&stream) == Z_OK else { throw DecompressionError(format: "gzip", kind: .corrupt("cannot reset between members")) }
                if produced > 0 { return produced }
            default:
                throw DecompressionError(format: "gzip", kind: .corrupt(message ?? "zlib error \(ret)"))
            }
        }
    }
}

/// One-shot raw deflate (no header, as qcow2 stores compressed clusters).
package enum RawDeflate {
    /// Inflates `input[range]` into exactly `outputSize` bytes. Returns nil when the data is corrupt
    /// or does not fill the output; bytes after the end of the deflate stream are ignored (qcow2
    /// rounds compressed clusters up to whole sectors).
    public static func inflate(_ input: [UInt8], _ range: Range<Int>, outputSize: Int) -> [UInt8]? {
        var stream = z_stream()
        // windowBits -15: raw deflate; takes qemu's 4 KiB window (it writes with -12) and any other.
        guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: outputSize)
        let ok = input.withUnsafeBytes { inRaw in
            output.withUnsafeMutableBytes { outRaw in
                // zlib's next_in is not const-qualified, but inflate never writes through it.
                stream.next_in = UnsafeMutablePointer(mutating: inRaw.baseAddress!.assumingMemoryBound(to: Bytef.self) + range.lowerBound)
                stream.avail_in = uInt(range.count)
                stream.next_out = outRaw.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(outputSize)
                let ret = CZlib.inflate(&stream, Z_FINISH)
                let full = stream.avail_out == 0
                stream.next_in = nil
                stream.next_out = nil
                return full && (ret == Z_STREAM_END || ret == Z_OK || ret == Z_BUF_ERROR)
            }
        }
        return ok ? output : nil
    }
}
