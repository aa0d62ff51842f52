// libFuzzer target: GPT (both sector sizes) and MBR parsing of arbitrary bytes. Built by
// scripts/fuzz.sh with Sources/Dissect/{GPT,MBR,RandomAccessSource}.swift; any trap is a crash.

/// The fuzzer's bytes as a whole disk image.
struct BytesSource: RandomAccessSource {
    let bytes: [UInt8]
    var size: UInt64 { UInt64(bytes.count) }
    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw RandomAccessSourceError.outOfBounds(offset: offset, count: count, size: size)
        }
        return Array(bytes[Int(offset)..<Int(offset) + count])
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = count > 0 ? Array(UnsafeRawBufferPointer(start: start, count: count)) : []
    _ = try? GPT.parse(BytesSource(bytes: bytes))
    var sector = Array(bytes.prefix(512))
    if sector.count < 512 { sector += [UInt8](repeating: 0, count: 512 - sector.count) }
    _ = try? MBR.parse(sector0: sector, imageSize: UInt64(bytes.count))
    return 0
}
