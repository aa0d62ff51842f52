import ArgumentParser
import Runner

/// --private-users=, --private-users-ownership= and -U of `imagectl run` (nspawn's names).
struct RunUserNamespaceOptions: ParsableArguments {
    @Option(name: .customLong("private-users"), help: ArgumentHelp("""
        Run in a user namespace. Default (none given): a picked range as with pick and the root \
        ID-mapped, so the container's root is not the host's (a tree shifted by -U before keeps \
        its range); where the tree cannot be ID-mapped, no user namespace, with a warning. no: \
        none (nspawn's command-line default; one warning line: the container is then no \
        security boundary); yes (65536 IDs from the owner of the root directory); identity (0:65536 mapped to itself); pick (a free 65536-ID range of \
        524288-1879048191, the tree's own when free, else one chosen from the machine name, \
        never one of another running container or of host users/groups); N or N:M (base and \
        size, default 65536).
        """, valueName: "mode"))
    var privateUsers: String?

    @Option(name: .customLong("private-users-ownership"), help: ArgumentHelp("""
        How the tree's owners fit the range: off (files outside it show as nobody), chown (shift \
        every owner once, kept for later runs), map (an ID-mapped mount of the root, nothing \
        changed on disk; needs a tree not shifted before), auto (map where the file system \
        supports it and the tree is not shifted, else chown, or off where chown would change a \
        tree that must stay: --read-only, -x, --volatile). Default: auto with pick, off \
        otherwise; given alone, it means --private-users=pick with it. With a user namespace --bind=SRC:DST:idmap ID-maps a host directory too.
        """, valueName: "mode"))
    var privateUsersOwnership: String?

    @Flag(name: .customShort("U"), help: "Same as --private-users=pick --private-users-ownership=auto.")
    var pickUsers = false

    func apply(to c: inout ContainerConfiguration) throws {
        if pickUsers {
            c.userNamespace.mode = .pick
            c.userNamespace.ownership = .auto
        }
        do {
            if let privateUsers { c.userNamespace.mode = try UserNamespaceSettings.parseMode(privateUsers) }
            if let privateUsersOwnership { c.userNamespace.ownership = try UserNamespaceSettings.parseOwnership(privateUsersOwnership) }
        } catch {
            throw ValidationError(error.description)
        }
    }
}

// A range held by another running container: exit 16 (busy), as for a live machine name.
extension UserNamespaceError: BusyReporting {}
