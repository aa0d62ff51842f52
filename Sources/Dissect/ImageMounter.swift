import CShims
import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// What `ImageMounter.mount` set up, written to /run/imagectl/mounts/ so that `umount` can find
/// the loop devices again (they also detach by themselves: autoclear).
public struct MountRecord: Sendable, Codable, Equatable {
    public var image: String
    public var target: String
    public var loopDevices: [Int]
    /// Mount points in the order they were mounted.
    public var mountPoints: [String]
    /// How each verity-protected partition was checked before mounting.
    public var verity: [String]
    /// dm-verity devices opened for the mount (only where device-mapper exists).
    public var dmVerityDevices: [String] = []
}

/// Applies a `MountPlan`: one loop device per partition, the mounts in plan order, mount targets
/// opened beneath the image's root (openat2 RESOLVE_IN_ROOT, so a symlink inside the image cannot
/// send a mount elsewhere), and complete teardown (every mount under the target, every loop
/// device) when any step fails. All privileged mount steps for images are in this one type.
public enum ImageMounter {
    public enum Error: Swift.Error, CustomStringConvertible {
        case targetBusy(String)
        case targetMissing(String)
        case encrypted(PartitionDesignator)
        case notMounted(String)
        case verity(PartitionDesignator, String)
        case unmountFailed(String, String)
        case mountFailed(what: String, fstype: String, target: String, reason: String)

        public var description: String {
            switch self {
            case .targetBusy(let dir): "\(dir) already has something mounted on or below it"
            case .targetMissing(let dir): "\(dir) does not exist (use --mkdir to create it)"
            case .encrypted(let d): "the \(d.rawValue) partition is LUKS-encrypted: unlocking needs device-mapper, which this kernel does not have (/dev/mapper/control is absent)"
            case .notMounted(let dir): "nothing of an image is mounted at \(dir)"
            case .verity(let d, let message): "verity check of the \(d.rawValue) partition failed, nothing mounted: \(message)"
            case .unmountFailed(let path, let why): "unmounting \(path) failed: \(why)"
            case .mountFailed(let what, let fstype, let target, let reason):
                "mounting \(what) (\(fstype)) on \(target) failed: \(reason)\(reason.contains("No such device") ? " (the kernel does not support \(fstype))" : "")"
            }
        }
    }

    public struct Options: Sendable {
        /// Create the target directory and missing mount points inside the tree.
        public var mkdir: Bool
        /// Progress and "which verity path was taken" lines.
        public var log: @Sendable (String) -> Void
        /// Write the state record under /run/imagectl/mounts (off for private temporary mounts).
        public var record: Bool
        /// Trusted certificates for root hash signatures.
        public var keyringDirectory: String
        public init(mkdir: Bool = false, record: Bool = true, keyringDirectory: String = VeritySignatureCheck.defaultKeyringDirectory,
                    log: @escaping @Sendable (String) -> Void = { _ in }) {
            self.mkdir = mkdir
            self.record = record
            self.keyringDirectory = keyringDirectory
            self.log = log
        }
    }

    public static var recordDirectory: String {
        ProcessInfo.processInfo.environment["IMAGECTL_MOUNT_RECORDS"] ?? "/run/imagectl/mounts"
    }

    /// Mounts the plan at `target`. On any failure everything set up so far is torn down before
    /// the error is thrown.
    public static func mount(_ plan: MountPlan, at target: String, options: Options = Options()) async throws -> MountRecord {
        let target = URL(fileURLWithPath: target).standardizedFileURL.path
        if !FileManager.default.fileExists(atPath: target) {
            guard options.mkdir else { throw Error.targetMissing(target) }
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        }
        let resolvedTarget = URL(fileURLWithPath: target).resolvingSymlinksInPath().path
        guard Mount.mounts(under: resolvedTarget).isEmpty else { throw Error.targetBusy(resolvedTarget) }

        let session = Session(record: MountRecord(image: plan.imagePath, target: resolvedTarget, loopDevices: [], mountPoints: [], verity: []))
        // Without device-mapper the verity check is made in userspace before mounting; a private
        // reflink copy (where the file system can make one) is what it checks and what is
        // mounted, so later writes to the image cannot reach the verified mount.
        if !DMVerity.isAvailable, plan.mounts.contains(where: { $0.verity != nil }) {
            switch PrivateImageCopy.make(of: plan.imagePath) {
            case .copy(let fd): session.verityCopy = fd
            case .unavailable(let reason): session.noCopyReason = reason
            }
        }
        do {
            for planned in plan.mounts {
                try await session.apply(planned, plan: plan, target: resolvedTarget, options: options)
            }
            session.finish()
            if options.record { try? writeRecord(session.record) }
            return session.record
        } catch {
            session.closeDescriptors()
            teardown(target: resolvedTarget, loops: session.loops, dmDevices: session.record.dmVerityDevices)
            throw error
        }
    }

    /// State of one mount operation: the loop devices attached and the root directory opened,
    /// so that a failure at any step knows what to undo.
    final class Session {
        var record: MountRecord
        var loops: [LoopDevice] = []
        var root: FileDescriptor?
        /// The private reflink copy verity-protected partitions are checked and mounted from
        /// (userspace path only); its loop devices keep it once this is closed.
        var verityCopy: FileDescriptor?
        /// Why there is no private copy on the userspace path.
        var noCopyReason: String?

        init(record: MountRecord) { self.record = record }
        deinit {
            try? root?.close()
            try? verityCopy?.close()
        }

        func closeDescriptors() {
            try? root?.close()
            root = nil
            // Unnamed: closing the last descriptor (with no loop device on it) frees it.
            try? verityCopy?.close()
            verityCopy = nil
        }

        /// The mounts hold the loop devices now; with autoclear they detach on unmount.
        func finish() {
            for loop in loops { loop.close() }
            closeDescriptors()
        }

        func apply(_ planned: PlannedMount, plan: MountPlan, target resolvedTarget: String, options: Options) async throws {
            if planned.encrypted, let d = planned.designator { throw Error.encrypted(d) }
            // Where: the top directory itself, or a directory opened beneath the mounted root.
            var targetFD: FileDescriptor? = nil
            let mountPath: String
            let displayPath: String
            if planned.target == .path("/") {
                mountPath = resolvedTarget
                displayPath = resolvedTarget
            } else {
                guard let rootFD = root else { return }
                guard let inside = try resolveTarget(planned.target, root: rootFD, plan: plan, mkdir: options.mkdir) else {
                    options.log("\(planned.designator?.rawValue ?? "?"): no \(planned.target) directory in the image, not mounted (use --mkdir to create it)")
                    return
                }
                let fd = try OpenBeneath.open(inside, in: rootFD, flags: OpenBeneath.pathOnly | O_DIRECTORY)
                targetFD = fd
                // mount(2) on the /proc/self/fd link mounts on the directory the descriptor
                // names, whatever happens to the path afterwards.
                mountPath = "/proc/self/fd/\(fd.rawValue)"
                displayPath = resolvedTarget + inside
            }
            do {
                try await mount(planned, plan: plan, at: mountPath, options: options)
                try? targetFD?.close()
            } catch let error as SystemCallError where error.call == "mount" {
                try? targetFD?.close()
                let reason = String(cString: strerror(error.errno.rawValue))
                throw Error.mountFailed(what: planned.designator?.rawValue ?? "tmpfs", fstype: planned.fstype, target: displayPath, reason: reason)
            } catch {
                try? targetFD?.close()
                throw error
            }
            record.mountPoints.append(displayPath)
            if planned.target == .path("/") {
                root = try FileDescriptor.open(FilePath(resolvedTarget), .readOnly, options: [.directory, .closeOnExec])
            }
        }

        /// With device-mapper: the hash tree gets its own loop device (dm-verity wants both areas
        /// at offset 0 of their devices) and libcryptsetup opens the verity device.
        func openDMVerity(_ requirement: VerityRequirement, designator: PartitionDesignator, plan: MountPlan,
                          loop: LoopDevice, size: UInt64) throws -> String {
            let hashPath: String
            let hashSize: UInt64
            if let file = requirement.hashFile {
                hashPath = file
                hashSize = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? UInt64) ?? 0
            } else {
                let hashLoop = try LoopDevice.attach(plan.imagePath, LoopDevice.Configuration(
                    offset: requirement.hashOffset ?? 0, sizeLimit: requirement.hashSize ?? 0, readOnly: true))
                loops.append(hashLoop)
                record.loopDevices.append(hashLoop.number)
                hashPath = hashLoop.path
                hashSize = requirement.hashSize ?? 0
            }
            let name = "imagectl-\(getpid())-\(designator.rawValue)-\(loop.number)"
            let target = VerityTarget(dataPath: loop.path, dataOffset: 0, dataSize: size, hashPath: hashPath, hashOffset: 0, hashSize: hashSize)
            let device = try DMVerity.activate(name: name, target: target, rootHash: requirement.rootHash, signature: requirement.signature)
            record.dmVerityDevices.append(name)
            return device
        }

        func mount(_ planned: PlannedMount, plan: MountPlan, at mountPath: String, options: Options) async throws {
            var flags: MountFlags = [.noDev]
            if planned.readOnly { flags.insert(.readOnly) }
            if planned.noSuid { flags.insert(.noSuid) }
            if planned.noExec { flags.insert(.noExec) }
            let data: String? = planned.options.isEmpty ? nil : planned.options.joined(separator: ",")
            switch planned.source {
            case .tmpfs:
                try Mount.mount(source: "tmpfs", target: mountPath, type: "tmpfs", flags: flags, data: data)
            case .partition(_, let offset, let size):
                let configuration = LoopDevice.Configuration(offset: offset, sizeLimit: size, readOnly: planned.readOnly)
                // Only verity-protected partitions (read-only) come from the private copy: a
                // writable partition must keep writing to the image itself.
                let loop = if let copy = verityCopy, planned.verity != nil {
                    try LoopDevice.attach(backingFD: copy.rawValue, name: plan.imagePath, configuration)
                } else {
                    try LoopDevice.attach(plan.imagePath, configuration)
                }
                loops.append(loop)
                record.loopDevices.append(loop.number)
                var source = loop.path
                if let requirement = planned.verity, let designator = planned.designator {
                    // A signature is only worth something when a trusted certificate made it:
                    // an image can carry any root hash and signature it likes.
                    if let signature = requirement.signature {
                        do {
                            let signer = try await VeritySignatureCheck.check(
                                rootHashHex: VerityHex.encode(requirement.rootHash), pkcs7DER: signature,
                                keyringDirectory: options.keyringDirectory, certificateFingerprint: requirement.certificateFingerprint)
                            let line = "\(designator.rawValue): root hash signature by \(signer) is trusted (keyring \(options.keyringDirectory))"
                            record.verity.append(line)
                            options.log(line)
                        } catch {
                            throw Error.verity(designator, "root hash signature not trusted: \(error)")
                        }
                    }
                    if DMVerity.isAvailable {
                        source = try openDMVerity(requirement, designator: designator, plan: plan, loop: loop, size: size)
                        let how = "\(designator.rawValue): opened dm-verity through libcryptsetup (the kernel checks every block as it is read)"
                        record.verity.append(how)
                        options.log(how)
                    } else {
                        let how = try await checkVerity(requirement, designator: designator, plan: plan, loop: loop, size: size,
                                                        copy: verityCopy, noCopyReason: noCopyReason)
                        record.verity.append(how)
                        options.log(how)
                    }
                }
                try Mount.mount(source: source, target: mountPath, type: planned.fstype, flags: flags, data: data)
            }
        }
    }

    /// Unmounts everything at and below `target` (deepest first), detaches the loop devices the
    /// record names (and those the mounts used), and removes the record.
    public static func unmount(_ target: String, removeDirectory: Bool = false) throws {
        let resolved = URL(fileURLWithPath: target).resolvingSymlinksInPath().path
        let mounts = Mount.mounts(under: resolved)
        let record = readRecord(resolved)
        guard !mounts.isEmpty || record != nil else { throw Error.notMounted(resolved) }
        let loopsFromMounts = mounts.compactMap { entry -> Int? in
            guard entry.source.hasPrefix("/dev/loop") else { return nil }
            return Int(entry.source.dropFirst("/dev/loop".count))
        }
        // Which file each loop device shows now, so that only our devices are detached later.
        var backing: [Int: String] = [:]
        for n in Set(loopsFromMounts + (record?.loopDevices ?? [])) { backing[n] = LoopDevice.backingFile(number: n) }
        for entry in mounts {
            do {
                try Mount.unmount(entry.mountPoint)
            } catch let error as SystemCallError {
                throw Error.unmountFailed(entry.mountPoint, error.errno == .resourceBusy ? "busy (a process uses it)" : error.description)
            }
        }
        for name in record?.dmVerityDevices.reversed() ?? [] { try? DMVerity.deactivate(name: name) }
        for (n, file) in backing {
            // Devices the mounts used, and the record's devices while they still show its image.
            let ours = loopsFromMounts.contains(n) || record.map { LoopDevice.attached(to: $0.image).contains(n) } == true
            if ours { _ = try? LoopDevice.detach(number: n, ifBackedBy: file) }
        }
        waitForDetach(backing)
        if record != nil { try? FileManager.default.removeItem(atPath: recordPath(resolved)) }
        if removeDirectory { try FileManager.default.removeItem(atPath: resolved) }
    }

    /// Best-effort teardown after a failure: every mount under `target`, deepest first (lazily if
    /// one is busy), then every loop device we attached.
    static func teardown(target: String, loops: [LoopDevice], dmDevices: [String] = []) {
        for entry in Mount.mounts(under: target) {
            if (try? Mount.unmount(entry.mountPoint)) == nil { try? Mount.unmount(entry.mountPoint, detach: true) }
        }
        for name in dmDevices.reversed() { try? DMVerity.deactivate(name: name) }
        var backing: [Int: String] = [:]
        for loop in loops { backing[loop.number] = LoopDevice.backingFile(number: loop.number) }
        for loop in loops.reversed() { try? loop.detach(); loop.close() }
        waitForDetach(backing)
    }

    /// The kernel finishes an autoclear detach when the filesystem lets go of the device, which
    /// can trail umount2 by a moment: wait (up to 2 s) until none of `devices` still shows the
    /// file it had, so that "umount returned" means "nothing is attached".
    static func waitForDetach(_ devices: [Int: String]) {
        for _ in 0..<200 {
            let remaining = devices.filter { n, file in LoopDevice.backingFile(number: n) == file }
            if remaining.isEmpty { return }
            usleep(10_000)
        }
    }

    /// The path (inside the tree) to mount at, creating it with `mkdir`; nil to skip.
    static func resolveTarget(_ target: MountTarget, root: FileDescriptor, plan: MountPlan, mkdir: Bool) throws -> String? {
        switch target {
        case .path(let path):
            if OpenBeneath.fileType(path, in: root) == S_IFDIR { return path }
            guard mkdir else { return nil }
            try makeDirectories(path, in: root)
            return path
        case .espDirectory:
            if OpenBeneath.fileType("/efi", in: root) == S_IFDIR { return "/efi" }
            let hasXbootldr = plan.mounts.contains { $0.designator == .xbootldr }
            if !hasXbootldr, OpenBeneath.fileType("/boot", in: root) == S_IFDIR,
               (OpenBeneath.directoryEntries("/boot", in: root) ?? ["x"]).isEmpty {
                return "/boot"
            }
            guard mkdir else { return nil }
            try makeDirectories("/efi", in: root)
            return "/efi"
        }
    }

    /// mkdir -p beneath `root`, one component at a time, each opened with RESOLVE_IN_ROOT.
    static func makeDirectories(_ path: String, in root: FileDescriptor) throws {
        var current = ""
        for component in path.split(separator: "/") {
            let parent = current.isEmpty ? "/" : current
            current += "/" + component
            if OpenBeneath.fileType(current, in: root) == S_IFDIR { continue }
            let dir = try OpenBeneath.open(parent, in: root, flags: O_RDONLY | O_DIRECTORY)
            defer { try? dir.close() }
            let name = String(component)
            // mkdirat(2) directly: EEXIST (a directory made meanwhile) is fine. (A do/catch over
            // the typed-throws systemCall here sent swift-frontend 6.3 into an endless SIL pass.)
            if mkdirat(dir.rawValue, name, 0o755) != 0 {
                let code = Errno(rawValue: img_errno())
                if code != .fileExists { throw SystemCallError("mkdirat", errno: code, path: current) }
            }
        }
    }

    /// Verifies a verity-protected partition before it is mounted, without device-mapper: the
    /// whole tree is checked in userspace through the loop device that will be mounted, and the
    /// mount is read-only. With `copy` the loop device and the hash tree are those of the
    /// private reflink copy (PrivateImageCopy), so what was checked is what stays mounted.
    /// Without one the loop device reads the image file: a process that rewrites the file after
    /// the check can change what the mount sees (dm-verity would catch that at read time, a
    /// one-time check cannot), and the line says so.
    static func checkVerity(_ requirement: VerityRequirement, designator: PartitionDesignator, plan: MountPlan,
                            loop: LoopDevice, size: UInt64, copy: FileDescriptor?, noCopyReason: String?) async throws -> String {
        // The copy through its /proc/self/fd link: the verifier opens paths, and the clone has
        // no other name.
        let imageSource = copy.map { "/proc/self/fd/\($0.rawValue)" } ?? plan.imagePath
        let hashPath = requirement.hashFile ?? imageSource
        let hashOffset = requirement.hashFile == nil ? (requirement.hashOffset ?? 0) : 0
        let hashSize: UInt64
        if let file = requirement.hashFile {
            hashSize = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? UInt64) ?? 0
        } else {
            hashSize = requirement.hashSize ?? 0
        }
        let target = VerityTarget(dataPath: loop.path, dataOffset: 0, dataSize: size, hashPath: hashPath,
                                  hashOffset: hashOffset, hashSize: hashSize)
        do {
            let report = try await VerityVerifier.verify(target, rootHash: requirement.rootHash)
            let seconds = String(format: "%.2f", report.seconds)
            let blocks = report.blocksChecked
            let name = designator.rawValue
            if copy != nil {
                return "\(name): device-mapper unavailable: verified the whole verity tree in userspace on a private reflink copy of \(plan.imagePath) (\(blocks) blocks, \(seconds) s), mounting that copy read-only; later writes to \(plan.imagePath) do not reach the mount"
            }
            // Said, not implied: the check was at one point in time.
            let why = noCopyReason.map { " (no private copy: \($0))" } ?? ""
            return "\(name): device-mapper unavailable: verified the whole verity tree in userspace (\(blocks) blocks, \(seconds) s), mounting read-only; the check was one-time: later writes to \(plan.imagePath) are not caught\(why)"
        } catch {
            throw Error.verity(designator, String(describing: error))
        }
    }

    static func recordPath(_ target: String) -> String {
        let name = target.utf8.map { String(format: "%02x", $0) }.joined()
        return "\(recordDirectory)/\(name).json"
    }

    static func writeRecord(_ record: MountRecord) throws {
        try FileManager.default.createDirectory(atPath: recordDirectory, withIntermediateDirectories: true)
        let data = try JSONEncoder().encode(record)
        let path = recordPath(record.target)
        try data.write(to: URL(fileURLWithPath: path + ".tmp"))
        _ = Glibc.rename(path + ".tmp", path)
    }

    public static func readRecord(_ target: String) -> MountRecord? {
        guard let data = FileManager.default.contents(atPath: recordPath(target)) else { return nil }
        return try? JSONDecoder().decode(MountRecord.self, from: data)
    }
}
