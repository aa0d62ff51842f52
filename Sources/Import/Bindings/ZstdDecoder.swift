// zstd streams (one or more frames) and qcow2's zstd-compressed clusters, through libzstd.
import CZstd
import Foundation

/// Decompresses a zstd stream read from `upstream`.
package final class ZstdDecoder: ByteSource {
    private let context: OpaquePointer
    private var input: DecoderInput
    /// ZSTD_decompressStream returns 0 exactly when a frame is complete and fully flushed.
    private var frameComplete = true

    public init(upstream: ByteSource) throws {
        guard let context = ZSTD_createDCtx() else { throw DecompressionError(format: "zstd", kind: .setup("ZSTD_createDCtx failed")) }
        self.context = context
        input = DecoderInput(upstream: upstream, capacity: Int(ZSTD_DStreamInSize()))
    }

    deinit { ZSTD_freeDCtx(context) }

    public func read(into buffer: inout [UInt8]) throws -> Int {
        let capacity = buffer.count
        while true {
            try input.refillIfConsumed()
            let available = input.available
            let position = input.position
            // ZSTD_inBuffer/ZSTD_outBuffer are per call; the context keeps no pointer into them
            // (the default, non-stable output buffer mode).
            let (ret, consumed, produced) = input.buffer.withUnsafeBytes { inRaw in
                buffer.withUnsafeMutableBytes { outRaw in
                    var inBuffer = ZSTD_inBuffer(src: inRaw.baseAddress! + position, size: available, pos: 0)
                    var outBuffer = ZSTD_outBuffer(dst: outRaw.baseAddress!, size: capacity, pos: 0)
                    let ret = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    return (ret, inBuffer.pos, outBuffer.pos)
                }
            }
            input.position += consumed
            if ZSTD_isError(ret) != 0 {
                throw DecompressionError(format: "zstd", kind: .corrupt(String(cString: ZSTD_getErrorName(ret))))
            }
            // With no input and nothing to flush, zstd returns the size hint of the next frame's
            // header (non-zero): that call says nothing about whether the last frame completed.
            if consumed > 0 || produced > 0 { frameComplete = ret == 0 }
            if produced > 0 { return produced }
            if input.exhausted {
                // The output buffer had room and nothing came out: either all frames are done or
                // the input stopped inside one.
                if frameComplete { return 0 }
                throw DecompressionError(format: "zstd", kind: .truncated)
            }
        }
    }
}

/// One-shot zstd decompression of a qcow2 cluster.
package enum ZstdCluster {
    /// Decompresses from `input[range]` until `outputSize` bytes are produced. Returns nil when
    /// the data is corrupt or ends first. Bytes after the frame are ignored (sector padding).
    public static func decompress(_ input: [UInt8], _ range: Range<Int>, outputSize: Int) -> [UInt8]? {
        guard let context = ZSTD_createDCtx() else { return nil }
        defer { ZSTD_freeDCtx(context) }
        var output = [UInt8](repeating: 0, count: outputSize)
        let ok = input.withUnsafeBytes { inRaw in
            output.withUnsafeMutableBytes { outRaw in
                var inBuffer = ZSTD_inBuffer(src: inRaw.baseAddress! + range.lowerBound, size: range.count, pos: 0)
                var outBuffer = ZSTD_outBuffer(dst: outRaw.baseAddress!, size: outputSize, pos: 0)
                while outBuffer.pos < outputSize {
                    let before = (inBuffer.pos, outBuffer.pos)
                    let ret = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    if ZSTD_isError(ret) != 0 { return false }
                    if ret == 0 && outBuffer.pos < outputSize { return false }  // frame ended short
                    if (inBuffer.pos, outBuffer.pos) == before { return false }  // no progress: input ended
                }
                return true
            }
        }
        return ok ? output : nil
    }
}
