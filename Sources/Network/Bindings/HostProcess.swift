import CShims
import Foundation
import Glibc

/// The helper programs of the host side (dnsmasq, nft) and the few process calls about them.
enum HostProcess {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `program` to completion with posix_spawn(3): all signals default and unblocked (the
    /// caller's thread may block SIGTERM, and a mask is inherited: dnsmasq would then ignore
    /// the SIGTERM that stops it), descriptors from 3 up closed (an inherited OFD lock would
    /// outlive a killed imagectl in the daemon). Output goes to files, not pipes: dnsmasq
    /// daemonizes and a pipe its daemon kept open would never reach its end.
    static func run(_ program: String, _ arguments: [String], input: Data? = nil) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.path
        let stem = "\(directory)/imagectl-net-\(UUID().uuidString)"
        let (inPath, outPath, errPath) = (stem + ".in", stem + ".out", stem + ".err")
        defer { for path in [inPath, outPath, errPath] { unlink(path) } }
        FileManager.default.createFile(atPath: inPath, contents: input ?? Data(), attributes: [.posixPermissions: 0o600])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        img_spawn_file_actions_closefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, program, &actions, &attributes, argv, environ)
        guard code == 0 else { throw NetworkSetupError.step("run \(program)", String(cString: strerror(code))) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED/WEXITSTATUS are macros Swift does not import: low 7 bits 0 means exited.
        let exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: exitStatus,
                      stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    static func userExists(_ name: String) -> Bool { getpwnam(name) != nil }

    /// /proc/PID/comm, or nil when there is no such process.
    static func commandName(of pid: Int32) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A zombie counts as gone: a daemonized dnsmasq's parent is init, which may reap it late.
    static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    /// SIGTERM, then up to a second for it to go, then SIGKILL and up to another second. Looks
    /// often at first (a dnsmasq is gone within a millisecond or two), then every 10 ms.
    static func terminate(_ pid: Int32) {
        guard pid > 1 else { return }
        _ = kill(pid, SIGTERM)
        var waited: useconds_t = 0
        var killed = false
        while waited < 2_000_000 {
            if !isAlive(pid) { return }
            if !killed && waited >= 1_000_000 {
                _ = kill(pid, SIGKILL)
                killed = true
            }
            let step: useconds_t = waited < 20_000 ? 1_000 : 10_000
            usleep(step)
            waited += step
        }
    }

    static func signal(_ pid: Int32, hangUp: Void) { _ = kill(pid, SIGHUP) }

    /// Writes "1" to a sysctl file under /proc/sys (of the caller's network namespace for net.*).
    static func enableSysctl(_ path: String) throws {
        let current = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if current == "1" { return }
        do { try "1\n".write(toFile: path, atomically: false, encoding: .utf8) }
        catch { throw NetworkSetupError.step("switch on \(path)", "\(error.localizedDescription)") }
    }

    static var processID: Int32 { getpid() }
}
