import Dissect
import Foundation
import Testing
import TestSupport

/// Shared helpers for the verity tests: deterministic data files and `veritysetup format`.
enum VerityFixture {
    /// Pseudo-random bytes from a seed (xorshift), so a failing case can be rebuilt exactly.
    static func bytes(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            var word = state
            for _ in 0..<8 where i < count {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Flips one bit of a file in place.
    static func flipBit(_ path: String, at offset: UInt64, bit: UInt8 = 0) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        guard let old = try handle.read(upToCount: 1)?.first else {
            throw FixtureError(text: "no byte at offset \(offset) of \(path)")
        }
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([old ^ (1 << bit)]))
    }

    struct FixtureError: Error, CustomStringConvertible { var text: String; var description: String { text } }

    /// Runs `veritysetup format DATA HASH ARGS` and returns the root hash it prints.
    static func format(data: String, hash: String, arguments: [String]) throws -> String {
        let result = try Tool.run("veritysetup", ["format"] + arguments + [data, hash])
        guard result.status == 0 else {
            throw FixtureError(text: "veritysetup format failed (\(result.status)): \(result.stderr)")
        }
        for line in result.stdout.split(separator: "\n") where line.hasPrefix("Root hash:") {
            return line.dropFirst("Root hash:".count).trimmingCharacters(in: .whitespaces)
        }
        throw FixtureError(text: "no root hash in veritysetup output: \(result.stdout)")
    }

    /// `veritysetup verify DATA HASH ROOT`: true when it accepts.
    static func veritysetupAccepts(data: String, hash: String, rootHash: String, arguments: [String] = []) throws -> Bool {
        try Tool.run("veritysetup", ["verify"] + arguments + [data, hash, rootHash]).status == 0
    }
}

/// One hash tree layout to test.
struct VerityCase: Sendable, CustomTestStringConvertible {
    var dataBytes: Int
    var dataBlockSize: Int
    var hashBlockSize: Int
    var hashType: Int
    var algorithm: String
    /// Hex salt, "-" for none.
    var salt: String
    var seed: UInt64

    var arguments: [String] {
        ["--data-block-size=\(dataBlockSize)", "--hash-block-size=\(hashBlockSize)", "--format=\(hashType)",
         "--hash=\(algorithm)", "--salt=\(salt)"]
    }

    var testDescription: String {
        "\(dataBytes) bytes, data \(dataBlockSize) hash \(hashBlockSize), type \(hashType), \(algorithm), salt \(salt.prefix(8))"
    }

    static let all: [VerityCase] = [
        VerityCase(dataBytes: 4 << 20, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 1, algorithm: "sha256",
                   salt: "5eed" + String(repeating: "ab", count: 30), seed: 1),
        VerityCase(dataBytes: 300 * 1024, dataBlockSize: 512, hashBlockSize: 512, hashType: 1, algorithm: "sha256",
                   salt: "00112233", seed: 2),
        // 5000 blocks, 16 digests per 512-byte hash block: four levels.
        VerityCase(dataBytes: 5000 * 512, dataBlockSize: 512, hashBlockSize: 512, hashType: 1, algorithm: "sha256",
                   salt: "-", seed: 3),
        VerityCase(dataBytes: 1 << 20, dataBlockSize: 1024, hashBlockSize: 4096, hashType: 0, algorithm: "sha1",
                   salt: "deadbeef", seed: 4),
        VerityCase(dataBytes: 2 << 20, dataBlockSize: 4096, hashBlockSize: 1024, hashType: 1, algorithm: "sha512",
                   salt: String(repeating: "7f", count: 256), seed: 5),
        VerityCase(dataBytes: 777 * 4096, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 0, algorithm: "sha256",
                   salt: "c0ffee", seed: 6),
        VerityCase(dataBytes: 3 << 20, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 1, algorithm: "sha1",
                   salt: "-", seed: 7),
        VerityCase(dataBytes: 1 << 20, dataBlockSize: 512, hashBlockSize: 4096, hashType: 0, algorithm: "sha512",
                   salt: "01", seed: 8),
        // One data block: no tree at all, the root hash is the data block's digest.
        VerityCase(dataBytes: 4096, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 1, algorithm: "sha256",
                   salt: "abcd", seed: 9),
        // Exactly one full level-0 block (128 data blocks): a single level.
        VerityCase(dataBytes: 128 * 4096, dataBlockSize: 4096, hashBlockSize: 4096, hashType: 1, algorithm: "sha256",
                   salt: "abcd", seed: 10),
    ]

    /// Writes the data file, formats it with veritysetup and returns (target, root hash hex).
    func make(in dir: TemporaryDirectory, name: String = "case") throws -> (target: VerityTarget, rootHash: String) {
        let data = dir.appending("\(name).data")
        let hash = dir.appending("\(name).hash")
        try VerityFixture.write(VerityFixture.bytes(count: dataBytes, seed: seed), to: data)
        let root = try VerityFixture.format(data: data, hash: hash, arguments: arguments)
        return (try VerityTarget.files(data: data, hash: hash), root)
    }
}
