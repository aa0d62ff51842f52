/// The compressed input of a streaming decoder: one buffer, refilled from the upstream source
/// once the decoder has consumed everything read so far. The xz, gzip and zstd decoders share it.
struct DecoderInput {
    let upstream: ByteSource
    var buffer: [UInt8]
    /// Bytes of `buffer` filled by the last read.
    var count = 0
    /// Bytes of those the decoder has consumed.
    var position = 0
    /// The upstream returned 0: no more input will come.
    var ended = false

    init(upstream: ByteSource, capacity: Int) {
        self.upstream = upstream
        buffer = [UInt8](repeating: 0, count: capacity)
    }

    /// Filled bytes the decoder has not consumed yet.
    var available: Int { count - position }

    /// The upstream ended and every byte of it was consumed.
    var exhausted: Bool { ended && position == count }

    /// Reads the next chunk from upstream when everything so far was consumed (and it has not
    /// ended yet).
    mutating func refillIfConsumed() throws {
        guard position == count && !ended else { return }
        count = try upstream.read(into: &buffer)
        position = 0
        if count == 0 { ended = true }
    }
}
