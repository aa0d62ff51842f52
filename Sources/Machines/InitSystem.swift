#if canImport(Glibc)
import Glibc
#endif

/// Which init a machine runs, as far as its lifecycle goes: each init takes its own signals for
/// "power off" and "reboot" (and most ignore the others), so `poweroff`, `reboot`, `stop` and a
/// SIGTERM to `imagectl run` must send the one that init understands.
public enum InitSystem: String, Codable, Sendable, CaseIterable {
    /// systemd: SIGRTMIN+4 powers off, SIGINT reboots (systemd(1) "Signals").
    case systemd
    /// busybox init: SIGUSR2 powers off, SIGTERM reboots, SIGUSR1 halts (init/init.c).
    case busybox
    /// sysvinit: SIGINT runs the ctrlaltdel action (Debian's inittab: a reboot), SIGPWR the
    /// powerfail action (a power off); init(8) "Signals".
    case sysvinit
    /// Another init (--boot): systemd's signals, which nspawn and machinectl send to every
    /// booted container.
    case other
    /// A plain payload (no --boot): it gets the kill signal for either.
    case plain

    /// Classifies the init from its path inside the tree with every symlink resolved (the
    /// file that will be executed, e.g. /bin/busybox for /sbin/init -> ../bin/busybox).
    public static func classify(resolvedPath: String) -> InitSystem {
        let name = resolvedPath.split(separator: "/").last.map(String.init) ?? ""
        switch name {
        case "systemd": return .systemd
        case "busybox", "busybox.static", "busybox-static": return .busybox
        // A /sbin/init that is not a link to systemd or busybox: sysvinit's own binary.
        case "init": return .sysvinit
        default: return .other
        }
    }

    /// The signals for this init; `killSignal` is what a plain payload gets for both.
    public func signals(killSignal: Int32) -> LifecycleSignals {
        let rtmin = Signals.realtimeMinimum
        switch self {
        case .systemd, .other: return LifecycleSignals(poweroff: rtmin + 4, reboot: SIGINT, halt: rtmin + 3)
        case .busybox: return LifecycleSignals(poweroff: SIGUSR2, reboot: SIGTERM, halt: SIGUSR1)
        case .sysvinit: return LifecycleSignals(poweroff: SIGPWR, reboot: SIGINT, halt: SIGPWR)
        case .plain: return LifecycleSignals(poweroff: killSignal, reboot: killSignal, halt: killSignal)
        }
    }
}

/// The signals that ask a machine's init to power off, reboot or halt.
public struct LifecycleSignals: Equatable, Sendable {
    public var poweroff: Int32
    public var reboot: Int32
    public var halt: Int32

    public init(poweroff: Int32, reboot: Int32, halt: Int32) {
        self.poweroff = poweroff
        self.reboot = reboot
        self.halt = halt
    }
}
