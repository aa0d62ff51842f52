import LinuxSystem
import Testing

/// ProcessArguments: finding an argument that is not UTF-8 and showing its bytes.
@Suite struct ProcessArgumentsTests {
    @Test func argumentsThatAreNotUTF8AreFoundAndEscaped() {
        let arguments: [[UInt8]] = [Array("imagectl".utf8), Array("run".utf8), [0x2f, 0x74, 0xff], [0xc3, 0x28]]
        let found = ProcessArguments.firstInvalidUTF8(in: arguments)
        #expect(found?.position == 2)
        #expect(found.map { ProcessArguments.escaped($0.bytes) } == "/t\\xff")
        #expect(ProcessArguments.escaped([0x61, 0x5c, 0x0a]) == "a\\x5c\\x0a")
        // Valid UTF-8 beyond ASCII passes; argv[0] is not judged.
        #expect(ProcessArguments.firstInvalidUTF8(in: [[0xff], Array("tr\u{e9}e".utf8)]) == nil)
    }
}
