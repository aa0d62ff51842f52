import Foundation
import TestSupport
@testable import Import

/// Test inputs made on the fly with Debian's tools.
enum Sample {
    /// Deterministic, compressible bytes with zero runs (so sparse output has holes): 64 KiB of
    /// text-like data, then 64 KiB of zeros, repeated.
    static func bytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count where (i / 65536) % 2 == 0 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            out[i] = UInt8(ascii: "a") + UInt8(state % 16)
        }
        return out
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func read(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Runs a shell command, failing the test with its stderr when it fails.
    @discardableResult
    static func sh(_ command: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", command])
        guard result.status == 0 else {
            throw ShellFailure(text: "\(command): exit \(result.status): \(result.stderr)")
        }
        return result.stdout
    }

    struct ShellFailure: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }
}

/// Reads a whole stream through a ByteSource.
func drain(_ source: ByteSource) throws -> [UInt8] {
    var all: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 100_000)  // not a power of two on purpose
    while true {
        let n = try source.read(into: &buffer)
        if n == 0 { return all }
        all.append(contentsOf: buffer[0..<n])
    }
}

/// Decodes a file the way an import does: magic detection, then the decoder.
func decodeFile(_ path: String) throws -> (Compression, [UInt8]) {
    let peek = PeekSource(try InputFile(path: path))
    let compression = Compression.detect(try peek.peek(6))
    return (compression, try drain(try compression.decoder(peek)))
}
