// xz decoding through liblzma's multi-threaded stream decoder (liblzma >= 5.4): a stream made of
// several blocks (xz -T0, or --block-size) is decoded on all cores; a single-block stream falls
// back to one thread inside liblzma. Concatenated streams are accepted as xz(1) does.
import CLZMA
import Foundation

/// Decompresses an xz stream read from `upstream`.
package final class XZDecoder: ByteSource {
    // LZMA_CONCATENATED is a macro the importer drops (SWIFT-NOTES.md): decode every stream of a
    // concatenation, as xz(1) does.
    private static let concatenated: UInt32 = 0x08

    private var stream = lzma_stream()
    private var input: DecoderInput
    private var finished = false
    private var stalls = 0

    /// - Parameters:
    ///   - threads: decoder threads (default: every active processor).
    ///   - memoryLimit: memory the threaded decoder may use before it falls back to one thread;
    ///     it never fails for lack of memory (memlimit_stop is unlimited), it only slows down.
    public init(upstream: ByteSource, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                memoryLimit: UInt64 = XZDecoder.defaultMemoryLimit) throws {
        input = DecoderInput(upstream: upstream, capacity: 1 << 20)
        var mt = lzma_mt()
        mt.flags = Self.concatenated
        mt.threads = UInt32(max(1, min(threads, 64)))
        mt.timeout = 0
        mt.memlimit_threading = memoryLimit
        mt.memlimit_stop = UInt64.max
        let ret = lzma_stream_decoder_mt(&stream, &mt)
        guard ret == LZMA_OK else { throw DecompressionError(format: "xz", kind: .setup(Self.describe(ret))) }
    }

    /// A quarter of physical memory, at least 256 MiB and at most 4 GiB: enough for several
    /// blocks of the usual 8-64 MiB dictionaries in flight.
    public static var defaultMemoryLimit: UInt64 {
        let quarter = ProcessInfo.processInfo.physicalMemory / 4
        return min(max(quarter, 256 << 20), 4 << 30)
    }

    deinit { lzma_end(&stream) }

    public func read(into buffer: inout [UInt8]) throws -> Int {
        if finished { return 0 }
        let capacity = buffer.count
        while true {
            try input.refillIfConsumed()
            let action = input.ended ? LZMA_FINISH : LZMA_RUN
            let available = input.available
            let position = input.position
            // liblzma copies what it needs during lzma_code and does not keep next_in/next_out
            // between calls, so the pointers only have to live for the duration of the call.
            let (ret, consumed, produced) = input.buffer.withUnsafeBytes { inRaw in
                buffer.withUnsafeMutableBytes { outRaw in
                    stream.next_in = inRaw.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + position }
                    stream.avail_in = available
                    stream.next_out = outRaw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    stream.avail_out = capacity
                    let ret = lzma_code(&stream, action)
                    let consumed = available - stream.avail_in
                    let produced = capacity - stream.avail_out
                    stream.next_in = nil
                    stream.next_out = nil
                    return (ret, consumed, produced)
                }
            }
            input.position += consumed
            switch ret {
            case LZMA_OK:
                if produced > 0 { return produced }
                // liblzma reports a stall as LZMA_BUF_ERROR on the next call; the counter only
                // guards against a decoder that never says so.
                if input.ended && consumed == 0 {
                    stalls += 1
                    if stalls > 1000 { throw DecompressionError(format: "xz", kind: .truncated) }
                } else {
                    stalls = 0
                }
            case LZMA_STREAM_END:
                finished = true
                return produced
            case LZMA_BUF_ERROR:
                // No progress possible: with LZMA_FINISH this means the input stopped mid-stream.
                if produced > 0 { return produced }
                throw DecompressionError(format: "xz", kind: .truncated)
            default:
                throw DecompressionError(format: "xz", kind: .corrupt(Self.describe(ret)))
            }
        }
    }

    static func describe(_ ret: lzma_ret) -> String {
        switch ret {
        case LZMA_DATA_ERROR: "compressed data is corrupt or its integrity check failed"
        case LZMA_FORMAT_ERROR: "not in the xz format"
        case LZMA_OPTIONS_ERROR: "unsupported compression options"
        case LZMA_MEM_ERROR: "out of memory"
        case LZMA_MEMLIMIT_ERROR: "memory limit reached"
        case LZMA_UNSUPPORTED_CHECK: "unsupported integrity check"
        case LZMA_PROG_ERROR: "liblzma programming error"
        default: "liblzma error \(ret.rawValue)"
        }
    }
}
