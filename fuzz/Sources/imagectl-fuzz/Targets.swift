import Dispatch
import Dissect
import Foundation
import Import
import LinuxSystem
import Pull
import Runner

/// A libFuzzer target: a parser of untrusted bytes, called the way imagectl calls it. Any trap
/// (or sanitizer report) is a crash; a target that checks a property the parser promises traps
/// through `require` when the property does not hold.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable ([UInt8]) -> Void

    static let all: [FuzzTarget] = [
        FuzzTarget(name: "gpt-mbr", run: PartitionTables.run),
        FuzzTarget(name: "sha256sums", run: ChecksumLines.run),
        FuzzTarget(name: "verity-superblock", run: VerityInputs.superblock),
        FuzzTarget(name: "verity-signature", run: VerityInputs.signatureJSON),
        FuzzTarget(name: "verity-cms", run: VerityInputs.cms),
        FuzzTarget(name: "qcow2", run: QCOW2Input.run),
        FuzzTarget(name: "nspawn-settings", run: SettingsFile.run),
        FuzzTarget(name: "tar-policy", run: TarEntries.run),
    ]
}

/// Traps with a message when a promised property does not hold (a finding, like a crash).
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("property violated: \(message())") }
}

/// Runs async code to completion from the fuzzer's synchronous callback.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.value = await body()
        done.signal()
    }
    done.wait()
    return box.value!
}

/// The result of `blocking`'s task: written before the semaphore is signalled, read after.
final class ResultBox<T: Sendable>: @unchecked Sendable { var value: T? }

// MARK: - partition tables

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

enum PartitionTables {
    /// GPT at both sector sizes, then MBR of the first sector: every partition the parsers
    /// return lies inside the usable range and the image.
    static func run(_ bytes: [UInt8]) {
        let size = UInt64(bytes.count)
        if let table = try? GPT.parse(BytesSource(bytes: bytes)) {
            let sectors = size / UInt64(table.sectorSize)
            for entry in table.entries {
                require(entry.firstLBA >= table.firstUsableLBA && entry.firstLBA <= entry.lastLBA
                        && entry.lastLBA <= table.lastUsableLBA && entry.lastLBA < sectors,
                        "GPT partition \(entry.number) at LBA \(entry.firstLBA)-\(entry.lastLBA) outside the usable "
                        + "\(table.firstUsableLBA)-\(table.lastUsableLBA) of \(sectors) sectors")
            }
        }
        var sector = Array(bytes.prefix(512))
        if sector.count < 512 { sector += [UInt8](repeating: 0, count: 512 - sector.count) }
        if let entries = try? MBR.parse(sector0: sector, imageSize: size) {
            for entry in entries {
                require(entry.offset <= size && entry.size <= size - entry.offset,
                        "MBR partition at \(entry.offset)+\(entry.size) outside \(size) bytes")
            }
        }
    }
}

// MARK: - SHA256SUMS

enum ChecksumLines {
    /// pull's checksum file parser: a digest it returns is 64 lower-case hex digits.
    static func run(_ bytes: [UInt8]) {
        let file = ChecksumFile(name: "SHA256SUMS", contents: bytes)
        for name in ["disk.raw.xz", "", "SHA256SUMS", "*x"] {
            for digest in [try? file.digest(for: name), (try? file.optionalDigest(for: name)) ?? nil] {
                guard let digest else { continue }
                require(digest.utf8.count == 64 && digest.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) },
                        "digest \(digest) for \(name)")
            }
        }
    }
}
