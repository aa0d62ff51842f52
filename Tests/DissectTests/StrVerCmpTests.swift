import Dissect
import Foundation
import Testing

@Suite struct StrVerCmpTests {
    /// The order the glibc manual page gives for strverscmp(3).
    @Test func manualPageOrder() {
        let ordered = ["000", "00", "01", "010", "09", "0", "1", "9", "10"]
        for (i, a) in ordered.enumerated() {
            for (j, b) in ordered.enumerated() {
                let r = strverscmp(a, b)
                #expect((r < 0) == (i < j) && (r == 0) == (i == j), "strverscmp(\(a), \(b)) = \(r)")
            }
        }
    }

    @Test func labelsOfABUpdates() {
        #expect(strverscmp("root-1.10", "root-1.9") > 0)
        #expect(strverscmp("root_2", "root_10") < 0)
        #expect(strverscmp("os 1.2.3", "os 1.2.3") == 0)
        #expect(strverscmp("a", "") > 0)
        #expect(strverscmp("", "a") < 0)
        #expect(strverscmp("v2", "v2a") < 0)
    }

    /// Compares with glibc's own strverscmp on random version-like strings, through python's ctypes
    /// (skipped when python3 is missing).
    @Test func agreesWithGlibc() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("0012345679.-_a")
        var pairs: [(String, String)] = []
        for _ in 0..<400 {
            let a = String((0..<Int.random(in: 0...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            var b = a
            if b.isEmpty || Bool.random(using: &rng) {
                b = String((0..<Int.random(in: 0...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            } else {
                var chars = Array(b)
                chars[Int.random(in: 0..<chars.count, using: &rng)] = alphabet.randomElement(using: &rng)!
                b = String(chars)
            }
            pairs.append((a, b))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("strverscmp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("pairs")
        try pairs.map { "\($0.0)\t\($0.1)" }.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let script = """
            import ctypes,sys
            libc=ctypes.CDLL("libc.so.6")
            for line in open(sys.argv[1]).read().split("\\n"):
                a,b=line.split("\\t")
                r=libc.strverscmp(a.encode(),b.encode())
                print((r>0)-(r<0))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, input.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let expected = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        #expect(expected.count == pairs.count)
        for (pair, want) in zip(pairs, expected) {
            let got = strverscmp(pair.0, pair.1)
            #expect(got.signum() == want, "strverscmp(\"\(pair.0)\", \"\(pair.1)\") = \(got), glibc says \(want)")
        }
    }
}
