import Foundation

/// Random-access bytes of an image: a file, a block device, or (in tests) memory. Parsers read
/// through this so that every read is bounded by `size` and a short read is an error, not garbage.
public protocol RandomAccessSource: Sendable {
    /// Total size in bytes.
    var size: UInt64 { get }
    /// Exactly `count` bytes at `offset`; throws when the range is not inside the source.
    func read(at offset: UInt64, count: Int) throws -> [UInt8]
}

/// Errors of reading an image's bytes.
public enum RandomAccessSourceError: Swift.Error, CustomStringConvertible, Equatable {
    case outOfBounds(offset: UInt64, count: Int, size: UInt64)
    case shortRead(offset: UInt64, wanted: Int, got: Int)

    public var description: String {
        switch self {
        case .outOfBounds(let offset, let count, let size):
            "read of \(count) bytes at offset \(offset) is past the end of the image (\(size) bytes)"
        case .shortRead(let offset, let wanted, let got):
            "short read at offset \(offset): wanted \(wanted) bytes, got \(got)"
        }
    }
}

extension RandomAccessSource {
    /// Checks that `count` bytes at `offset` lie inside the source (no overflow).
    func checkRange(_ offset: UInt64, _ count: Int) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(max(count, 0)))
        if count < 0 || overflow || end > size {
            throw RandomAccessSourceError.outOfBounds(offset: offset, count: count, size: size)
        }
    }
}

/// Bytes held in memory: for parser tests and fuzzing.
public struct MemorySource: RandomAccessSource {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var size: UInt64 { UInt64(bytes.count) }
    public func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        try checkRange(offset, count)
        let start = Int(offset)
        return Array(bytes[start..<(start + count)])
    }
}

/// Little-endian field access on a byte array with every index checked: a hostile length can
/// make a read fail, never trap.
struct LittleEndianReader {
    let bytes: [UInt8]

    enum Failure: Swift.Error { case outOfRange }

    func u8(_ at: Int) throws -> UInt8 {
        guard at >= 0, at < bytes.count else { throw Failure.outOfRange }
        return bytes[at]
    }
    func u16(_ at: Int) throws -> UInt16 { UInt16(try uint(at, 2)) }
    func u32(_ at: Int) throws -> UInt32 { UInt32(try uint(at, 4)) }
    func u64(_ at: Int) throws -> UInt64 { try uint(at, 8) }

    private func uint(_ at: Int, _ width: Int) throws -> UInt64 {
        guard at >= 0, width <= bytes.count, at <= bytes.count - width else { throw Failure.outOfRange }
        var value: UInt64 = 0
        for i in (0..<width).reversed() { value = (value << 8) | UInt64(bytes[at + i]) }
        return value
    }

    func slice(_ at: Int, _ count: Int) throws -> [UInt8] {
        guard at >= 0, count >= 0, count <= bytes.count, at <= bytes.count - count else { throw Failure.outOfRange }
        return Array(bytes[at..<(at + count)])
    }

    /// A GPT/EFI GUID: the first three fields are stored little-endian, the last two big-endian.
    func guid(_ at: Int) throws -> UUID {
        let b = try slice(at, 16)
        return UUID.fromBytes(UUID.swapGPTOrder(b))
    }
}

extension UUID {
    /// Bytes in the GPT on-disk (mixed-endian) order; the inverse of `LittleEndianReader.guid`.
    public var gptBytes: [UInt8] { UUID.swapGPTOrder(bytes) }

    /// Big-endian (RFC 4122) bytes, as in a verity root hash half.
    public var bytes: [UInt8] {
        withUnsafeBytes(of: uuid) { raw -> [UInt8] in Array(raw) }
    }

    /// A UUID from 16 big-endian bytes (shorter input is zero-padded).
    public static func fromBytes(_ input: [UInt8]) -> UUID {
        var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<min(16, input.count) { raw[i] = input[i] }
        }
        return UUID(uuid: value)
    }

    /// GPT stores the first three GUID fields little-endian: swap them (its own inverse).
    static func swapGPTOrder(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = b
        let order: [Int] = [3, 2, 1, 0, 5, 4, 7, 6]
        for i in 0..<8 { out[i] = b[order[i]] }
        return out
    }

    /// Lower-case text form, as systemd prints partition UUIDs.
    public var lowercased: String { uuidString.lowercased() }
}
