/// SipHash-2-4 (Aumasson and Bernstein), the 64-bit keyed hash systemd uses to derive stable
/// MAC addresses and short interface names (src/basic/siphash24.c); imagectl derives the same
/// values from the same inputs, so a machine keeps its addresses when moved between the two.
enum SipHash24 {
    static func hash(_ data: [UInt8], key: [UInt8]) -> UInt64 {
        precondition(key.count == 16, "SipHash key is 16 bytes")
        func word(_ bytes: ArraySlice<UInt8>) -> UInt64 {
            bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        let k0 = word(key[0..<8]), k1 = word(key[8..<16])
        var v0: UInt64 = 0x736f6d6570736575 ^ k0
        var v1: UInt64 = 0x646f72616e646f6d ^ k1
        var v2: UInt64 = 0x6c7967656e657261 ^ k0
        var v3: UInt64 = 0x7465646279746573 ^ k1

        func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }
        func round() {
            v0 &+= v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
            v2 &+= v3; v3 = rotl(v3, 16); v3 ^= v2
            v0 &+= v3; v3 = rotl(v3, 21); v3 ^= v0
            v2 &+= v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
        }

        let whole = data.count / 8 * 8
        var offset = 0
        while offset < whole {
            let m = word(data[offset..<(offset + 8)])
            v3 ^= m
            round(); round()
            v0 ^= m
            offset += 8
        }
        // The last block: the remaining bytes, and the length's low byte at the top.
        let last = word(data[whole...]) | UInt64(data.count & 0xff) << 56
        v3 ^= last
        round(); round()
        v0 ^= last
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}
