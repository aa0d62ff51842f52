/// Merging a parsed .nspawn file into a configuration, as nspawn.c's merge_settings() does:
/// a setting applies only where the command line did not set the same thing (the "settings
/// mask"; empty with --settings=override, so the file wins), and an untrusted file's privileged
/// settings are ignored with a warning.
extension NspawnSettings {
    /// What the command line set (nspawn's SETTING_* bits). A masked setting keeps the command
    /// line's value.
    public struct Mask: OptionSet, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }

        /// -b, -a or a command (Boot=, ProcessTwo=, Parameters=).
        public static let startMode = Mask(rawValue: 1 << 0)
        public static let environment = Mask(rawValue: 1 << 1)
        public static let user = Mask(rawValue: 1 << 2)
        public static let workingDirectory = Mask(rawValue: 1 << 3)
        /// --capability= or --drop-capability=.
        public static let capability = Mask(rawValue: 1 << 4)
        public static let killSignal = Mask(rawValue: 1 << 5)
        public static let personality = Mask(rawValue: 1 << 6)
        /// --uuid= (MachineID=).
        public static let machineID = Mask(rawValue: 1 << 7)
        public static let readOnly = Mask(rawValue: 1 << 8)
        public static let volatile = Mask(rawValue: 1 << 9)
        /// --bind, --bind-ro, --tmpfs, --overlay, --overlay-ro.
        public static let customMounts = Mask(rawValue: 1 << 10)
        /// --private-network.
        public static let network = Mask(rawValue: 1 << 11)
        /// --private-users= or --private-users-ownership=.
        public static let userNamespace = Mask(rawValue: 1 << 12)
        public static let notifyReady = Mask(rawValue: 1 << 13)
        public static let systemCallFilter = Mask(rawValue: 1 << 14)
        public static let hostname = Mask(rawValue: 1 << 15)
        public static let noNewPrivileges = Mask(rawValue: 1 << 16)
        public static let oomScoreAdjust = Mask(rawValue: 1 << 17)
        public static let cpuAffinity = Mask(rawValue: 1 << 18)
        public static let resolvConf = Mask(rawValue: 1 << 19)
        public static let timezone = Mask(rawValue: 1 << 20)
        public static let ephemeral = Mask(rawValue: 1 << 21)
        /// -p/--port= (Port=).
        public static let ports = Mask(rawValue: 1 << 22)

        /// --rlimit= for one resource (bits 32 and up, one per RLIMIT_* number).
        public static func resourceLimit(_ resource: Int32) -> Mask {
            guard resource >= 0, resource < 32 else { return [] }
            return Mask(rawValue: 1 << (32 + UInt64(resource)))
        }
    }

    /// Applies the file's settings to `c` where `mask` allows, dropping an untrusted file's
    /// privileged ones. Returns the warnings to show (the parser's, then one per ignored setting).
    public func apply(to c: inout ContainerConfiguration, mask: Mask, trusted: Bool, path: String) throws(RunnerError) -> [String] {
        var result = warnings
        func untrusted(_ what: String) {
            result.append("ignoring \(what): settings file \(path) is not trusted")
        }
        if !mask.contains(.startMode) {
            if let startMode {
                c.boot = startMode == .boot
                c.asPID2 = startMode == .pid2
                c.command = parameters ?? []
            } else if parameters != nil {
                // nspawn takes Parameters= only together with a start mode; say so instead.
                result.append("ignoring Parameters= in \(path): it needs Boot= or ProcessTwo= (as in systemd-nspawn)")
            }
        }
        if !mask.contains(.ephemeral), let ephemeral {
            if trusted { c.ephemeral = ephemeral } else { untrusted("Ephemeral=") }
        }
        if !mask.contains(.workingDirectory), let workingDirectory { c.workingDirectory = workingDirectory }
        if !mask.contains(.environment), let environment { c.environment = environment }
        if !mask.contains(.user), let user { c.user = user }
        if !mask.contains(.capability) {
            if !capability.isEmpty {
                if trusted {
                    c.addCapabilities.formUnion(capability)
                    c.dropCapabilities.subtract(capability)
                } else {
                    untrusted("Capability=")
                }
            }
            // Dropping takes nothing away from the host: it applies from any file.
            c.dropCapabilities.formUnion(dropCapability)
            c.addCapabilities.subtract(dropCapability)
        }
        if !mask.contains(.killSignal), let killSignal { c.killSignal = killSignal }
        if !mask.contains(.personality), let personality { c.process.personality = personality }
        if !mask.contains(.machineID), let machineID {
            if trusted { c.uuid = machineID } else { untrusted("MachineID=") }
        }
        if !mask.contains(.readOnly), let readOnly { c.readOnly = readOnly }
        if !mask.contains(.volatile), let volatile { c.mounts.volatile = volatile }
        if !mask.contains(.customMounts), !mounts.isEmpty {
            if trusted { c.mounts.extra = mounts } else { untrusted("Bind=, BindReadOnly=, TemporaryFileSystem=, Overlay= and OverlayReadOnly=") }
        }
        if !mask.contains(.network), privateNetwork != nil || !networkKeys.isEmpty {
            // VirtualEthernet=, Zone=, ... imply a private network, as in nspawn; the file's
            // links replace the command line's (which set none: the mask).
            if trusted {
                c.privateNetwork = privateNetwork == true || !networkKeys.isEmpty
                var links = network
                links.ports = c.network.ports
                c.network = links
            } else {
                untrusted("[Network] settings")
            }
        }
        if !mask.contains(.ports), !network.ports.isEmpty {
            // nspawn's SETTING_EXPOSE_PORTS: its own trust check and mask bit.
            if trusted { c.network.ports = network.ports } else { untrusted("Port=") }
        }
        if !mask.contains(.userNamespace), privateUsers != nil || privateUsersOwnership != nil {
            if trusted { try applyUserNamespace(to: &c) } else { untrusted("PrivateUsers= and PrivateUsersOwnership=") }
        }
        if !mask.contains(.notifyReady), let notifyReady { applyNotifyReady(notifyReady, to: &c) }
        if !mask.contains(.systemCallFilter), !systemCallFilter.isEmpty {
            // Denying calls is always allowed; a list that allows calls needs a trusted file.
            let allows = systemCallFilter.contains { item in
                let text = Self.trimmed(item.text)
                return !text.hasPrefix("~") && !text.isEmpty
            }
            if allows && !trusted { untrusted("SystemCallFilter=") } else { try applySystemCallFilter(to: &c) }
        }
        for limit in resourceLimits where !mask.contains(.resourceLimit(limit.resource)) {
            guard trusted else {
                let index = Int(limit.resource)
                let name = ProcessSettings.resourceNames.indices.contains(index) ? ProcessSettings.resourceNames[index] : "\(index)"
                untrusted("Limit\(name)=")
                continue
            }
            c.process.resourceLimits.removeAll { $0.resource == limit.resource }
            c.process.resourceLimits.append(limit)
        }
        if !mask.contains(.hostname), let hostname { c.hostname = hostname }
        if !mask.contains(.noNewPrivileges), let noNewPrivileges { c.noNewPrivileges = noNewPrivileges }
        if !mask.contains(.oomScoreAdjust), let oomScoreAdjust {
            if trusted { c.process.oomScoreAdjust = oomScoreAdjust } else { untrusted("OOMScoreAdjust=") }
        }
        if !mask.contains(.cpuAffinity), let cpuAffinity {
            if trusted { c.process.cpuAffinity = cpuAffinity } else { untrusted("CPUAffinity=") }
        }
        if !mask.contains(.resolvConf), let resolvConf { c.resolvConf = resolvConf }
        if !mask.contains(.timezone), let timezone { c.timezone = timezone }
        return result
    }
}
