/// The payload's process settings of `imagectl run` beyond identity and capabilities: console
/// and resource limits.
public struct ProcessSettings: Sendable {
    /// Give the payload a pty (its controlling terminal, standard streams and /dev/console)
    /// relayed to imagectl's terminal by `ConsoleRelay`; false: it shares imagectl's streams.
    public var console = false
    /// With `console`: relay only the console's output (input, raw mode and the window size are
    /// left alone), for a booted system when imagectl has no terminal.
    public var consoleReadOnly = false

    /// One --rlimit=: a resource (setrlimit(2) number) and its soft and hard values.
    public struct ResourceLimit: Equatable, Sendable {
        public var resource: Int32
        public var soft: UInt64
        public var hard: UInt64
    }
    /// --rlimit= settings, applied with prlimit(2) before the payload runs (last one per resource wins).
    public var resourceLimits: [ResourceLimit] = []
    /// --oom-score-adjust= (-1000...1000), written to /proc/self/oom_score_adj.
    public var oomScoreAdjust: Int32?
    /// --cpu-affinity= CPU numbers, set with sched_setaffinity(2).
    public var cpuAffinity: [Int]?
    /// --personality=: the personality(2) persona (PER_LINUX 0, PER_LINUX32 8).
    public var personality: UInt32?

    /// Parses "x86" (PER_LINUX32: uname -m says i686) or "x86-64" (PER_LINUX), the
    /// architectures an x86-64 host can offer, as nspawn's --personality= names them.
    public static func parsePersonality(_ text: String) throws(RunnerError) -> UInt32 {
        switch text {
        case "x86": return 0x0008
        case "x86-64": return 0x0000
        default: throw .invalidOption(option: "--personality", value: text)
        }
    }

    public init() {}

    /// RLIMIT_* names in resource number order (asm-generic/resource.h).
    static let resourceNames = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
                                "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]
    /// RLIM_INFINITY.
    public static let infinity = UInt64.max

    /// Parses "NOFILE=1024", "RLIMIT_NOFILE=1024:4096", "CORE=infinity" as nspawn's --rlimit= does.
    public static func parseResourceLimit(_ text: String) throws(RunnerError) -> ResourceLimit {
        let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .invalidOption(option: "--rlimit", value: text) }
        var name = parts[0].uppercased()
        if name.hasPrefix("RLIMIT_") { name.removeFirst(7) }
        guard let resource = resourceNames.firstIndex(of: name) else { throw .invalidOption(option: "--rlimit", value: text) }
        func value(_ s: Substring) throws(RunnerError) -> UInt64 {
            if s == "infinity" { return infinity }
            guard let v = UInt64(s), v != infinity else { throw .invalidOption(option: "--rlimit", value: text) }
            return v
        }
        let values = parts[1].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let soft = try value(values[0])
        let hard = values.count == 2 ? try value(values[1]) : soft
        guard soft <= hard else { throw .invalidOption(option: "--rlimit", value: text) }
        return ResourceLimit(resource: Int32(resource), soft: soft, hard: hard)
    }

    /// Parses "-1000".."1000".
    public static func parseOOMScoreAdjust(_ text: String) throws(RunnerError) -> Int32 {
        guard let v = Int32(text), v >= -1000, v <= 1000 else { throw .invalidOption(option: "--oom-score-adjust", value: text) }
        return v
    }

    /// Parses a CPU list as systemd does: "0", "0,2", "0-3", "1 3" (ranges, commas or spaces).
    public static func parseCPUList(_ text: String) throws(RunnerError) -> [Int] {
        var cpus: Set<Int> = []
        for item in text.split(whereSeparator: { $0 == "," || $0 == " " }) {
            let bounds = item.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard let low = Int(bounds[0]), low >= 0, low < 1024 else { throw .invalidOption(option: "--cpu-affinity", value: text) }
            var high = low
            if bounds.count == 2 {
                guard let h = Int(bounds[1]), h >= low, h < 1024 else { throw .invalidOption(option: "--cpu-affinity", value: text) }
                high = h
            }
            for cpu in low...high { cpus.insert(cpu) }
        }
        guard !cpus.isEmpty else { throw .invalidOption(option: "--cpu-affinity", value: text) }
        return cpus.sorted()
    }

    /// The CPU set as 64-bit words for sched_setaffinity(2) (bit N of word N/64 = CPU N).
    var cpuMaskWords: [UInt64] {
        guard let cpuAffinity, let highest = cpuAffinity.max() else { return [] }
        var words = [UInt64](repeating: 0, count: highest / 64 + 1)
        for cpu in cpuAffinity { words[cpu / 64] |= 1 << UInt64(cpu % 64) }
        return words
    }
}
