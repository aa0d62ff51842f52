import LinuxSystem
import SystemPackage

/// The image's user database (/etc/passwd and /etc/group, read beneath the image root): who the
/// payload runs as. The host's NSS is never asked, since the names belong to the image.
public struct PasswdEntry: Equatable, Sendable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32
    public var home: String
    public var shell: String
}

public enum UserDatabase {
    /// Parses passwd(5) lines ("name:x:uid:gid:gecos:home:shell"); malformed lines are skipped.
    public static func parsePasswd(_ text: String) -> [PasswdEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 7, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
            return PasswdEntry(name: String(fields[0]), uid: uid, gid: gid, home: String(fields[5]), shell: String(fields[6]))
        }
    }

    /// Parses group(5) lines into (gid, members).
    public static func parseGroups(_ text: String) -> [(gid: UInt32, members: [String])] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, let gid = UInt32(fields[2]) else { return nil }
            return (gid, fields[3].split(separator: ",").map(String.init))
        }
    }

    /// The user named (or numbered) `user` in `passwd`; a number missing from the database runs
    /// with gid = uid, home "/" and no shell, as nspawn does for numeric ids it cannot resolve.
    public static func resolve(_ user: String, passwd: [PasswdEntry]) -> PasswdEntry? {
        if let entry = passwd.first(where: { $0.name == user }) { return entry }
        guard let uid = UInt32(user) else { return nil }
        if let entry = passwd.first(where: { $0.uid == uid }) { return entry }
        return PasswdEntry(name: user, uid: uid, gid: uid, home: "/", shell: "")
    }

    /// Supplementary groups of `name` from group(5), without the primary group.
    public static func supplementaryGroups(of name: String, primary: UInt32, groups: [(gid: UInt32, members: [String])]) -> [UInt32] {
        var result: [UInt32] = []
        for group in groups where group.members.contains(name) && group.gid != primary && !result.contains(group.gid) {
            result.append(group.gid)
        }
        return result
    }

    /// Who the payload runs as: `user` (a name or number; nil: the image's root) from the
    /// image's /etc/passwd, with its supplementary groups from /etc/group, both read beneath
    /// `root`. Shared by `imagectl run` and `imagectl shell`.
    static func identity(of user: String?, in root: FileDescriptor) throws -> (entry: PasswdEntry, groups: [UInt32]) {
        let passwd = (try OpenBeneath.readFile("etc/passwd", in: root)).map { parsePasswd(String(decoding: $0, as: UTF8.self)) } ?? []
        let groupDB = (try OpenBeneath.readFile("etc/group", in: root)).map { parseGroups(String(decoding: $0, as: UTF8.self)) } ?? []
        let entry: PasswdEntry
        if let user {
            guard let found = resolve(user, passwd: passwd) else { throw RunnerError.userNotFound(user) }
            entry = found
        } else {
            entry = passwd.first { $0.uid == 0 } ?? PasswdEntry(name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh")
        }
        return (entry, supplementaryGroups(of: entry.name, primary: entry.gid, groups: groupDB))
    }
}
