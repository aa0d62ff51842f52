import Testing
@testable import Machines

@Suite("Signal names")
struct SignalsTests {
    @Test func signalsParseAndName() throws {
        #expect(try Signals.parse("SIGTERM") == 15)
        #expect(try Signals.parse("kill") == 9)
        #expect(try Signals.parse("15") == 15)
        #expect(try Signals.parse("SIGRTMIN+3") == Signals.realtimeMinimum + 3)
        #expect(Signals.name(Signals.realtimeMinimum + 3) == "SIGRTMIN+3")
        #expect(Signals.name(9) == "SIGKILL")
        #expect(throws: MachineError.unknownSignal("SIGFOO")) { try Signals.parse("SIGFOO") }
        #expect(throws: MachineError.unknownSignal("0")) { try Signals.parse("0") }
        #expect(throws: MachineError.unknownSignal("RTMIN+99")) { try Signals.parse("RTMIN+99") }
        // Offsets that would overflow the arithmetic (a .nspawn file's KillSignal= is untrusted).
        for text in ["RTMIN+2147483647", "SIGRTMAX--2147483648", "RTMAX-2147483647", "RTMIN+-1"] {
            #expect(throws: MachineError.unknownSignal(text)) { try Signals.parse(text) }
        }
        #expect(try Signals.parse("RTMAX-0") == Signals.realtimeMaximum)
    }

    @Test func machineNamesFollowOneRule() {
        for name in ["web", "debian-12", "a.b_c", String(repeating: "x", count: 64)] { #expect(MachineRecord.isValidName(name)) }
        for name in ["", ".", "..", "-x", "a/b", "a b", String(repeating: "x", count: 65)] { #expect(!MachineRecord.isValidName(name)) }
        // A host name: no empty label (leading, doubled or trailing dot), no other punctuation.
        for name in [".hidden", "a..b", "trailing.", "sp ace", "é", "a:b", "a+b"] { #expect(!MachineRecord.isValidName(name), "\(name)") }
    }

    @Test func derivedNamesFollowTheRule() {
        #expect(MachineRecord.name(derivedFrom: "My Tree") == "MyTree")
        #expect(MachineRecord.name(derivedFrom: ".hidden") == "hidden")
        #expect(MachineRecord.name(derivedFrom: "-a..b.") == "a.b")
        #expect(MachineRecord.name(derivedFrom: String(repeating: "y", count: 80)) == String(repeating: "y", count: 64))
        #expect(MachineRecord.name(derivedFrom: "...") == nil)
        #expect(MachineRecord.name(derivedFrom: "éé") == nil)
    }
}
