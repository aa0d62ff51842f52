import ArgumentParser
import Runner

/// The process options of `imagectl run`: resource limits, OOM score, CPU affinity.
struct RunProcessOptions: ParsableArguments {
    @Option(name: .customLong("rlimit"), help: ArgumentHelp("Resource limit for the payload, LIMIT=SOFT[:HARD] with LIMIT one of CPU FSIZE DATA STACK CORE RSS NPROC NOFILE MEMLOCK AS LOCKS SIGPENDING MSGQUEUE NICE RTPRIO RTTIME (RLIMIT_ prefix optional), values a number or \"infinity\" (repeatable).", valueName: "limit=soft[:hard]"))
    var rlimit: [String] = []

    @Option(name: .customLong("oom-score-adjust"), help: ArgumentHelp("OOM score adjustment of the payload, -1000 to 1000.", valueName: "n"))
    var oomScoreAdjust: String?

    @Option(name: .customLong("cpu-affinity"), help: ArgumentHelp("CPUs the payload may run on, e.g. 0,2 or 0-3.", valueName: "list"))
    var cpuAffinity: String?

    @Option(name: .customLong("personality"), help: ArgumentHelp("Architecture the payload's uname reports: x86 (i686, a 32-bit personality) or x86-64.", valueName: "arch"))
    var personality: String?

    @Option(name: .customLong("notify-ready"), help: ArgumentHelp("yes: imagectl tells its service manager (sd_notify, $NOTIFY_SOCKET) READY=1 only when the payload sent READY=1 on $NOTIFY_SOCKET (/run/host/notify in the container); no (default): as soon as the payload started. STATUS= is forwarded either way.", valueName: "bool"))
    var notifyReady: String?

    func apply(to c: inout ContainerConfiguration) throws {
        if let notifyReady { c.notifyReady = try ContainerConfiguration.parseBoolean(notifyReady, option: "--notify-ready") }
        if let personality { c.process.personality = try ProcessSettings.parsePersonality(personality) }
        for item in rlimit {
            let limit = try ProcessSettings.parseResourceLimit(item)
            c.process.resourceLimits.removeAll { $0.resource == limit.resource }
            c.process.resourceLimits.append(limit)
        }
        if let oomScoreAdjust { c.process.oomScoreAdjust = try ProcessSettings.parseOOMScoreAdjust(oomScoreAdjust) }
        if let cpuAffinity { c.process.cpuAffinity = try ProcessSettings.parseCPUList(cpuAffinity) }
    }
}
