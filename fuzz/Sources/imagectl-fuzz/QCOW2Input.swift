import Foundation
import Glibc
import Import

enum QCOW2Input {
    /// The largest virtual size a fuzzed image may claim (a bigger one is refused as
    /// --max-size refuses it), so that one input cannot write gigabytes of holes and data.
    static let maximumVirtualSize: UInt64 = 16 << 20

    /// One anonymous tmpfs file the input is written to (reused: truncated for each input).
    nonisolated(unsafe) private static var input: OutputFile?

    /// qcow2 -> raw as import-raw runs it: header checks, then the conversion into an
    /// anonymous file. The output is exactly the virtual size the header declared.
    static func run(_ bytes: [UInt8]) {
        do {
            if input == nil { input = try OutputFile(anonymousIn: "/dev/shm") }
            guard let input else { return }
            try input.truncate(to: 0)
            if !bytes.isEmpty { try input.write(bytes, range: 0..<bytes.count, at: 0) }
            let file = InputFile(borrowing: input.fd, path: "fuzz.qcow2")
            guard let image = try? QCOW2Image(file: file, fileSize: UInt64(bytes.count), maximumVirtualSize: maximumVirtualSize) else { return }
            let output = try OutputFile(anonymousIn: "/dev/shm")
            let writer = SparseWriter(file: output)
            guard (try? image.convert(file: file, to: writer, cancelled: {})) != nil else { return }
            require(writer.size == image.virtualSize, "converted \(writer.size) bytes of a \(image.virtualSize)-byte image")
        } catch {
            fatalError("fuzz harness: \(error)")  // /dev/shm itself failed: not a finding, but stop
        }
    }
}
