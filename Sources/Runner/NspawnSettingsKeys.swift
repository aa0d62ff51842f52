/// The .nspawn keys whose values belong to other parts of the runner (user namespace, system call
/// filter, readiness): checked at parse time with those parts' own parsers and applied here.
extension NspawnSettings {
    static func checkPrivateUsers(_ text: String) throws(RunnerError) {
        _ = try privateUsersMode(text)
    }

    /// PrivateUsers= reads like --private-users= except that a file's "1" and "0" are booleans
    /// (nspawn's settings parser tries a boolean first; its command line never reads a number as
    /// one, so there "0" and "1" are bases).
    static func privateUsersMode(_ text: String) throws(RunnerError) -> UserNamespaceSettings.Mode {
        switch text {
        case "1": return .fromRootOwner
        case "0": return .off
        default: return try UserNamespaceSettings.parseMode(text)
        }
    }

    static func checkPrivateUsersOwnership(_ text: String) throws(RunnerError) {
        _ = try UserNamespaceSettings.parseOwnership(text)
    }

    static func checkSystemCallFilter(_ text: String) throws(RunnerError) {
        var scratch = SystemCallFilterSettings()
        try scratch.add(text)
    }

    /// PrivateUsers= and PrivateUsersOwnership= (nspawn: either one alone sets both; ownership
    /// alone means no user namespace).
    func applyUserNamespace(to c: inout ContainerConfiguration) throws(RunnerError) {
        var settings = UserNamespaceSettings(mode: .off)
        if let privateUsers { settings.mode = try Self.privateUsersMode(privateUsers.text) }
        if let privateUsersOwnership { settings.ownership = try UserNamespaceSettings.parseOwnership(privateUsersOwnership.text) }
        c.userNamespace = settings
    }

    /// SystemCallFilter=: the file's lists replace the command line's (as nspawn's merge does).
    func applySystemCallFilter(to c: inout ContainerConfiguration) throws(RunnerError) {
        var filter = SystemCallFilterSettings()
        for item in systemCallFilter { try filter.add(item.text) }
        c.systemCallFilter = filter
    }

    func applyNotifyReady(_ value: Bool, to c: inout ContainerConfiguration) {
        c.notifyReady = value
    }
}
