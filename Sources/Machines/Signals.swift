#if canImport(Glibc)
import Glibc
#endif
import CShims

/// Signal names and numbers as kill(1) and systemd spell them ("SIGTERM", "TERM", "SIGRTMIN+3", "15").
public enum Signals {
    static let names: [Int32: String] = [
        1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 5: "TRAP", 6: "ABRT", 7: "BUS", 8: "FPE", 9: "KILL",
        10: "USR1", 11: "SEGV", 12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM", 16: "STKFLT", 17: "CHLD",
        18: "CONT", 19: "STOP", 20: "TSTP", 21: "TTIN", 22: "TTOU", 23: "URG", 24: "XCPU", 25: "XFSZ",
        26: "VTALRM", 27: "PROF", 28: "WINCH", 29: "IO", 30: "PWR", 31: "SYS",
    ]

    public static var realtimeMinimum: Int32 { img_sigrtmin() }
    public static var realtimeMaximum: Int32 { Int32(64) }

    /// "SIGTERM" for 15, "SIGRTMIN+3" for 37.
    public static func name(_ number: Int32) -> String {
        if let name = names[number] { return "SIG" + name }
        let min = realtimeMinimum
        if number >= min && number <= realtimeMaximum { return number == min ? "SIGRTMIN" : "SIGRTMIN+\(number - min)" }
        return "signal \(number)"
    }

    /// Parses a signal name or number.
    public static func parse(_ text: String) throws(MachineError) -> Int32 {
        if let number = Int32(text) {
            guard number > 0 && number <= realtimeMaximum && number != 32 && number != 33 else { throw .unknownSignal(text) }
            return number
        }
        var upper = text.uppercased()
        if upper.hasPrefix("SIG") { upper.removeFirst(3) }
        if let (number, _) = names.first(where: { $0.value == upper }) { return number }
        if upper.hasPrefix("RTMIN") {
            let rest = upper.dropFirst(5)
            let offset: Int32
            if rest.isEmpty { offset = 0 } else if rest.first == "+", let n = Int32(rest.dropFirst()) { offset = n } else { throw .unknownSignal(text) }
            // Range first: the text is untrusted (a .nspawn file's KillSignal=), and an offset
            // near Int32.max must be refused, not overflow.
            guard offset >= 0, offset <= realtimeMaximum - realtimeMinimum else { throw .unknownSignal(text) }
            return realtimeMinimum + offset
        }
        if upper.hasPrefix("RTMAX") {
            let rest = upper.dropFirst(5)
            let offset: Int32
            if rest.isEmpty { offset = 0 } else if rest.first == "-", let n = Int32(rest.dropFirst()) { offset = n } else { throw .unknownSignal(text) }
            guard offset >= 0, offset <= realtimeMaximum - realtimeMinimum else { throw .unknownSignal(text) }
            return realtimeMaximum - offset
        }
        throw .unknownSignal(text)
    }
}
