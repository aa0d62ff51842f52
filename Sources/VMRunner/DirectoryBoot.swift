import CShims
import Foundation
import LinuxSystem
import Machines
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// `vm -D DIR` (a directory tree with its root on virtiofs) and --bind/--bind-ro: the shares,
/// their virtiofsd processes and the tree's direct boot.
extension VirtualMachine {
    /// Checks made before anything is created: virtiofsd exists, imagectl is root (virtiofsd
    /// needs it for its sandbox), each --bind source is a directory. Returns virtiofsd's path.
    static func checkShares(_ request: VMRequest) throws(VMError) -> String? {
        guard request.directory || !request.binds.isEmpty else { return nil }
        let option = request.directory ? "-D" : (request.binds[0].readOnly ? "--bind-ro" : "--bind")
        guard let binary = Virtiofsd.findBinary() else {
            throw .facilityMissing(option: option, reason: "virtiofsd is not installed (Debian: /usr/lib/qemu/virtiofsd, package qemu-system-common)")
        }
        guard geteuid() == 0 else { throw .facilityMissing(option: option, reason: "virtiofsd needs root") }
        var targets: Set<String> = []
        for bind in request.binds {
            let option = bind.readOnly ? "--bind-ro" : "--bind"
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: bind.source, isDirectory: &isDirectory) else { throw .missingFile(option: option, path: bind.source) }
            guard isDirectory.boolValue else { throw .invalidValue(option: option, value: bind.source, expected: "a directory (virtiofs shares directories)") }
            guard targets.insert(bind.target).inserted else { throw .invalidValue(option: option, value: bind.target, expected: "one share per guest path") }
        }
        return binary
    }

    /// Warnings for --bind targets a read-only tree lacks: nothing in the guest can make their
    /// mount points there.
    static func shareWarnings(_ request: VMRequest, tree: String) -> [String] {
        guard request.directory && request.readOnly else { return [] }
        return request.binds.compactMap { bind in
            var isDirectory: ObjCBool = false
            let path = tree + bind.target
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue { return nil }
            return "\(bind.target) is no directory in the read-only tree \(tree): the guest cannot mount \(bind.source) there"
        }
    }

    /// The shares of a request: the tree as the root (tag "root") with -D, then one per bind.
    /// Their sockets are in $IMAGECTL_RUNTIME_DIR/vfs, named after this imagectl.
    static func plannedShares(_ request: VMRequest, tree: String?) -> [VMSpec.Share] {
        let directory = RuntimeDirectory.path + "/vfs/\(ProcessInfo.processInfo.processIdentifier)-"
        var shares: [VMSpec.Share] = []
        if let tree {
            shares.append(VMSpec.Share(tag: VirtiofsShares.rootTag, socketPath: directory + VirtiofsShares.rootTag + ".sock",
                                       source: tree, readOnly: request.readOnly, guestPath: nil))
        }
        for (index, bind) in request.binds.enumerated() {
            let tag = VirtiofsShares.bindTag(index)
            shares.append(VMSpec.Share(tag: tag, socketPath: directory + tag + ".sock", source: bind.source, readOnly: bind.readOnly,
                                       guestPath: bind.target, guestOptions: bind.options))
        }
        return shares
    }

    /// Starts one virtiofsd per share (the root's over a throw-away overlay with -x). Until
    /// qemu's supervision takes over, SIGTERM/SIGINT/SIGHUP to imagectl end them first
    /// (img_spawn_guard). On a failure the ones started are stopped.
    static func startShares(_ shares: [VMSpec.Share], ephemeralRoot: Bool, binary: String, workspace: Workspace) throws(VMError) -> [Virtiofsd] {
        guard !shares.isEmpty else { return [] }
        do {
            try FileSystem.makeDirectories(RuntimeDirectory.path + "/vfs", mode: 0o700)
        } catch {
            throw .setupFailed("cannot create \(RuntimeDirectory.path)/vfs: \(error)")
        }
        var started: [Virtiofsd] = []
        do {
            for share in shares {
                started.append(try Virtiofsd.start(share, ephemeral: ephemeralRoot && share.guestPath == nil, binary: binary,
                                                   attachPoint: workspace.file("share-" + share.tag), log: workspace.file("virtiofsd.log")))
            }
        } catch {
            for daemon in started { daemon.stop() }
            throw error
        }
        let pids = started.map(\.pid)
        _ = pids.withUnsafeBufferPointer { img_spawn_guard($0.baseAddress, $0.count) }
        return started
    }

    /// -D's direct boot: the tree's newest kernel (or --linux=) and its initrd (or --initrd=)
    /// with `InitrdAppendix` after it, both copied into the workspace (read inside the tree, so
    /// its symlinks cannot point qemu at a host file). With `dryRun` only the paths.
    static func directoryBoot(_ request: VMRequest, tree: String, workspace: Workspace, dryRun: Bool) throws(VMError) -> VMSpec.Boot {
        let root: FileDescriptor
        do {
            root = try FileDescriptor.open(tree, .readOnly, options: [.directory, .closeOnExec])
        } catch {
            throw .imageNotUsable(path: tree, reason: "cannot be opened: \(error)")
        }
        defer { try? root.close() }
        let version: String
        var kernelPath: String
        var initrdInTree: String?
        var kernelPathInTree = ""
        if let linux = request.linux {
            let head = (try? readRegularFile(linux, upTo: 1 << 16)) ?? []
            guard let found = TreeKernel.bzImageVersion(head) else {
                throw .invalidValue(option: "--linux", value: linux, expected: "a bzImage kernel (its version names the tree's modules for virtiofs)")
            }
            version = found
            kernelPath = linux
        } else {
            guard let found = TreeKernel.find(in: root) else {
                throw .imageNotUsable(path: tree, reason: "has no kernel (/boot/vmlinuz-VERSION or /usr/lib/modules/VERSION/vmlinuz); install one there or give --linux=")
            }
            version = found.version
            kernelPath = tree + found.kernel
            kernelPathInTree = found.kernel
            initrdInTree = found.initrd
        }
        if request.linux == nil && initrdInTree == nil {
            throw .imageNotUsable(path: tree, reason: "has kernel \(version) but no initrd for it (/boot/initrd.img-\(version)); the virtiofs root needs one")
        }
        let modules = try InitrdAppendix.modules(in: root, version: version)
        let initrd = workspace.file("initrd")
        if request.linux == nil {
            let copy = workspace.file("linux")
            kernelPath = copy
            if !dryRun, let initrdInTree {
                try copyInTree(kernelPathInTree, root: root, to: copy)
                let base: FileDescriptor
                do { base = try OpenBeneath.open(initrdInTree, in: root, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK) } catch {
                    throw .setupFailed("cannot open the tree's initrd \(initrdInTree): \(error)")
                }
                defer { try? base.close() }
                try InitrdAppendix.write(base: base, root: root, modules: modules, to: initrd)
            }
        } else if !dryRun {
            // The user's initrds (concatenated as without -D), then the appendix.
            var base: FileDescriptor?
            if !request.initrds.isEmpty {
                let given = workspace.file("initrd.given")
                try concatenate(request.initrds, into: given)
                do { base = try FileDescriptor.open(given, .readOnly, options: [.closeOnExec]) } catch {
                    throw .setupFailed("cannot open \(given): \(error)")
                }
            }
            defer { try? base?.close() }
            try InitrdAppendix.write(base: base, root: root, modules: modules, to: initrd)
        }
        return .direct(kernel: kernelPath, initrd: initrd, rootPartitionUUID: nil)
    }

    /// Copies the file `path` inside the tree `root` to `output`.
    static func copyInTree(_ path: String, root: FileDescriptor, to output: String) throws(VMError) {
        let input: FileDescriptor
        do { input = try OpenBeneath.open(path, in: root, flags: O_RDONLY | O_NOCTTY | O_NONBLOCK) } catch {
            throw .setupFailed("cannot open \(path) in the tree: \(error)")
        }
        defer { try? input.close() }
        let out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw .setupFailed("cannot create \(output): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(input.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .setupFailed("reading \(path) in the tree: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            var offset = 0
            while offset < n {
                let w = chunk.withUnsafeBytes { write(out, $0.baseAddress! + offset, n - offset) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw .setupFailed("writing \(output): \(String(cString: strerror(errno)))") }
                offset += w
            }
        }
    }
}
