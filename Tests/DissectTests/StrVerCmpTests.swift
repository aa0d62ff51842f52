import Dissect
import Foundation
import Testing
import TestSupport

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

    /// Compares with glibc's own strverscmp(3) on random version-like strings (seeded, so a
    /// failure replays). glibc's function is looked up with dlsym: Swift's Glibc module does not
    /// export this GNU extension, and this module's own strverscmp shadows the name.
    @Test func agreesWithGlibc() throws {
        typealias Compare = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
        let symbol = try #require(dlsym(dlopen(nil, RTLD_NOW), "strverscmp"), "glibc has strverscmp")
        let glibc = unsafeBitCast(symbol, to: Compare.self)
        var rng = SeededGenerator(seed: 0x5354_5256)
        let alphabet = Array("0012345679.-_a")
        for _ in 0..<2000 {
            let a = String((0..<Int.random(in: 0...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            var b = a
            if b.isEmpty || Bool.random(using: &rng) {
                b = String((0..<Int.random(in: 0...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            } else {
                var chars = Array(b)
                chars[Int.random(in: 0..<chars.count, using: &rng)] = alphabet.randomElement(using: &rng)!
                b = String(chars)
            }
            let want = glibc(a, b).signum()
            let got = strverscmp(a, b)
            #expect(got.signum() == want, "strverscmp(\"\(a)\", \"\(b)\") = \(got), glibc says \(want)")
        }
    }
}
