import CShims
import Foundation
import LinuxSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// One virtiofsd (Debian's qemu ships the C one as /usr/lib/qemu/virtiofsd) serving one share,
/// started by imagectl before qemu and stopped when the VM ends.
///
/// Each runs in a mount namespace of its own (`img_spawn_with_mounts`). What it serves is
/// mounted there only: for -x an overlay of the tree under a tmpfs upper layer (made by the
/// child before it execs virtiofsd), for a read-only share a read-only clone of the tree (a
/// detached open_tree clone made here and attached there; this virtiofsd has no read-only
/// option of its own: the guest's writes fail with EROFS on that mount). They exist in no other
/// namespace, so they vanish with virtiofsd on every exit path, a kill -9 of imagectl included:
/// the same throw-away layer `run -x` gives a container (a tmpfs upper layer in the container's
/// namespace).
final class Virtiofsd: @unchecked Sendable {
    // @unchecked: touched only by the thread that prepares, runs and cleans up the VM.
    let pid: pid_t
    let socketPath: String
    private var running = true

    static let defaultBinary = "/usr/lib/qemu/virtiofsd"

    /// The binary: $IMAGECTL_VIRTIOFSD, else Debian's path, else virtiofsd on PATH.
    static func findBinary() -> String? {
        if let path = ProcessInfo.processInfo.environment["IMAGECTL_VIRTIOFSD"], !path.isEmpty { return path }
        if FileManager.default.isExecutableFile(atPath: defaultBinary) { return defaultBinary }
        return VirtualMachine.findTool("virtiofsd")
    }

    private init(pid: pid_t, socketPath: String) {
        self.pid = pid
        self.socketPath = socketPath
    }

    /// Starts virtiofsd for `share` and waits until its socket exists. `attachPoint` is an
    /// empty directory where the overlay or read-only clone is attached in virtiofsd's
    /// namespace; `log` receives its messages (shown when it fails to start).
    static func start(_ share: VMSpec.Share, ephemeral: Bool, binary: String, attachPoint: String, log: String) throws(VMError) -> Virtiofsd {
        var mounts: [FileDescriptor] = []
        defer { for fd in mounts { try? fd.close() } }
        var source = share.source
        if ephemeral || share.readOnly {
            do {
                try FileManager.default.createDirectory(atPath: attachPoint, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            } catch {
                throw .setupFailed("cannot create \(attachPoint): \(error.localizedDescription)")
            }
            source = attachPoint
        }
        var overlay: OverlayPlan?
        if ephemeral {
            var status = stat()
            guard stat(share.source, &status) == 0 else { throw .setupFailed("\(share.source): \(String(cString: strerror(errno)))") }
            overlay = OverlayPlan(tree: share.source, layers: attachPoint, owner: status, readOnly: share.readOnly)
            source = attachPoint + "/merged"
        } else if share.readOnly {
            let fd = img_open_tree_readonly(share.source)
            guard fd >= 0 else { throw .setupFailed("cannot make a read-only clone of \(share.source): \(String(cString: strerror(errno)))") }
            mounts.append(FileDescriptor(rawValue: fd))
        }
        unlink(share.socketPath)
        // cache=auto: what the guest reads is checked again after a second, so host changes to
        // a --bind directory show up in the guest during the same boot.
        let arguments = [binary, "--socket-path=" + share.socketPath, "-o", "source=" + source, "-o", "cache=auto",
                         "-o", "log_level=warn"]
        let output = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw .setupFailed("cannot create \(log): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var errorFD: Int32 = -1
        let pid: pid_t = withCStrings(arguments) { argv in
            withCStrings(mounts.isEmpty ? [] : [attachPoint]) { targets in
                let fds = mounts.map(\.rawValue)
                return fds.withUnsafeBufferPointer { fdBuffer in
                    targets.withMemoryRebound(to: UnsafePointer<CChar>?.self) { constTargets in
                        guard let overlay else {
                            return img_spawn_with_mounts(binary, argv.baseAddress, fdBuffer.baseAddress, constTargets.baseAddress,
                                                         fds.count, nil, output, &errorFD)
                        }
                        return overlay.withCStruct { plan in
                            img_spawn_with_mounts(binary, argv.baseAddress, fdBuffer.baseAddress, constTargets.baseAddress,
                                                  fds.count, plan, output, &errorFD)
                        }
                    }
                }
            }
        }
        guard pid > 0 else { throw .setupFailed("cannot start \(binary): \(String(cString: strerror(errno)))") }
        let daemon = Virtiofsd(pid: pid, socketPath: share.socketPath)
        if let failure = awaitExec(errorFD: errorFD) {
            daemon.reap()
            throw .toolFailed(tool: "virtiofsd", message: failure)
        }
        // virtiofsd makes its socket, then waits for qemu; qemu fails if it is not there yet.
        let deadline = Date(timeIntervalSinceNow: 10)
        while !FileManager.default.fileExists(atPath: share.socketPath) {
            if daemon.hasExited() || Date() > deadline {
                daemon.stop()
                let text = (FileManager.default.contents(atPath: log)).map { String(decoding: $0, as: UTF8.self) } ?? ""
                let message = text.split(separator: "\n").suffix(3).joined(separator: "; ")
                throw .toolFailed(tool: "virtiofsd", message: message.isEmpty ? "its socket \(share.socketPath) did not appear" : message)
            }
            usleep(5_000)
        }
        return daemon
    }

    /// The -x overlay, made by the child in virtiofsd's namespace (`img_spawn_overlay`): the
    /// tree as the lower layer under a tmpfs on `layers` (upper, work, merged), the upper
    /// directory with the tree root's owner and mode, which the merged root shows.
    struct OverlayPlan {
        var tree: String
        var layers: String
        var owner: stat
        var readOnly: Bool

        /// overlayfs's mount options separate by "," (and lower layers by ":"); "\" escapes.
        static func escape(_ path: String) -> String {
            var out = ""
            for c in path {
                if c == "\\" || c == "," || c == ":" { out.append("\\") }
                out.append(c)
            }
            return out
        }

        var options: String {
            "lowerdir=\(Self.escape(tree)),upperdir=\(Self.escape(layers + "/upper")),workdir=\(Self.escape(layers + "/work"))"
        }

        func withCStruct<R>(_ body: (UnsafePointer<img_spawn_overlay>) -> R) -> R {
            let names: [String] = [layers, layers + "/upper", layers + "/work", layers + "/merged", options]
            let strings: [UnsafeMutablePointer<CChar>?] = names.map { strdup($0) }
            defer { for p in strings { free(p) } }
            var plan = img_spawn_overlay(layers: UnsafePointer(strings[0]), upper: UnsafePointer(strings[1]), work: UnsafePointer(strings[2]),
                                         merged: UnsafePointer(strings[3]), options: UnsafePointer(strings[4]),
                                         uid: owner.st_uid, gid: owner.st_gid, mode: UInt32(owner.st_mode & 0o7777),
                                         read_only: readOnly ? 1 : 0)
            return withUnsafePointer(to: &plan) { body($0) }
        }
    }

    /// EOF on the child's error pipe: exec'd. Otherwise the step that failed.
    private static func awaitExec(errorFD: Int32) -> String? {
        defer { close(errorFD) }
        guard let report = ChildErrorReport.read(from: errorFD) else { return nil }
        return "\(report.step): \(String(cString: strerror(report.errorNumber)))"
    }

    private func hasExited() -> Bool {
        guard running else { return true }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { running = false }
        return !running
    }

    private func reap() {
        guard running else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        running = false
    }

    /// SIGTERM, SIGKILL when it is still there after two seconds; then its socket is removed.
    /// virtiofsd also ends by itself once qemu has gone (its connection closes).
    func stop() {
        if running {
            kill(pid, SIGTERM)
            let deadline = Date(timeIntervalSinceNow: 2)
            while !hasExited() && Date() < deadline { usleep(10_000) }
            if running { kill(pid, SIGKILL) }
            reap()
        }
        unlink(socketPath)
    }

    deinit { stop() }
}

/// `body` with a NULL-terminated C array of `strings`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutableBufferPointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeMutableBufferPointer { body($0) }
}
