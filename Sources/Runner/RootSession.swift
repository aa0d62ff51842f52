import Dissect
import Foundation
import ImageStore
import LinuxSystem
import Machines
import SystemPackage

/// The host-side state behind a container's root while it runs: the store image's lock, a disk
/// image mounted through its dissected mount plan, and the temporary directories of empty-source
/// binds and overlays. `open` sets it all up (undoing what it did when a step fails); `close`
/// undoes it on every exit path (unmounts, detaches the loop devices, removes the temporaries,
/// releases the lock).
public final class RootSession {
    /// The configuration with a concrete root directory, machine name and mount paths.
    public private(set) var configuration: ContainerConfiguration
    /// How the root was made, for the "Spawning" line and tests.
    public private(set) var description: String

    private var lock: ImageLock?
    /// The private directory an image is mounted below (…/root is the mount point).
    private var imageStaging: String?
    private var temporaries: [String] = []
    /// Overlay work directories made beneath the container root: the parent directory held open
    /// (so the removal goes exactly there, whatever happens to the path) and the name.
    private var workBeneathRoot: [(parent: FileDescriptor, name: String)] = []
    private var closed = false
    /// The throw-away btrfs snapshot of -x, deleted by `close`.
    private var snapshot: String?
    // --- lifecycle: claims on what a kill -9 could leave behind (see Leftovers) ---
    private var claims: [FileLock] = []
    /// The image's mounts as ImageMounter made them (loop devices, dm-verity devices).
    private var imageRecord: MountRecord?
    /// How the image's root and usr are protected (empty for a directory tree).
    public private(set) var verityTrust: [VerityTrust] = []
    /// Set once the host's copy of the image mounts was detached (the container holds its own).
    private var imageDetached = false

    public enum Error: Swift.Error, CustomStringConvertible {
        case noSource
        case storeImageType(String, String)
        case temporary(String, String)
        case interrupted(Int32)

        public var description: String {
            switch self {
            case .noSource: "no root given: use -D DIRECTORY, -i IMAGE or -M NAME (an image in the store)"
            case .storeImageType(let name, let type): "image \(name) is a \(type) image, which cannot be run as a container"
            case .temporary(let what, let why): "cannot create \(what): \(why)"
            case .interrupted(let signal): "interrupted by \(Signals.name(signal)) before the container started"
            }
        }
    }

    private init(_ configuration: ContainerConfiguration) {
        self.configuration = configuration
        self.description = configuration.directory
    }

    deinit { close() }

    /// Prepares the root: -M NAME from the store (locked, shared when read-only or ephemeral as
    /// nspawn does, exclusive otherwise), -i IMAGE mounted read-only where verity or the image
    /// demands, and the temporary directories of the extra mounts.
    public static func open(_ requested: ContainerConfiguration, log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> RootSession {
        EarlyTermination.install()
        let session = RootSession(requested)
        do {
            try await session.prepare(log: log)
        } catch {
            session.close()
            throw error
        }
        return session
    }

    private func prepare(log: @escaping @Sendable (String) -> Void) async throws {
        // Leftovers of runs that were killed (lifecycle): never anything a live run holds.
        let uppers = configuration.mounts.extra.compactMap { mount -> String? in
            if case .overlay(_, let upper?, _, _) = mount, !upper.inRoot, !upper.path.isEmpty { return upper.path }
            return nil
        }
        Leftovers.clean(source: configuration.ephemeral && !configuration.directory.isEmpty ? configuration.directory : nil,
                        uppers: uppers)
        // Parsed before anything is locked or mounted: a bad policy is a bad option.
        let policy = try configuration.mounts.imagePolicy.map { try ImagePolicy.parse($0) }
        var imagePath = configuration.mounts.image
        if let name = configuration.mounts.storeImage {
            let store = try ImageStore(root: configuration.mounts.storeRoot)
            let kind: FileLock.Kind = configuration.readOnly || configuration.ephemeral ? .shared : .exclusive
            let (image, lock) = try await store.lock(named: name, kind: kind)
            self.lock = lock
            switch image.type {
            case .directory, .subvolume:
                configuration.directory = image.path
                description = image.path
            case .raw, .block:
                imagePath = image.path
            }
            if configuration.machineName == nil { configuration.machineName = name }
        }
        if imagePath == nil, !configuration.directory.isEmpty {
            // -D or a directory image of the pool: only what a plain tree can satisfy, decided
            // before the tree is locked or anything is mounted.
            try ImageAdmission.admitDirectory(configuration.directory, policy: policy, verity: configuration.mounts.verity)
        }
        if configuration.mounts.storeImage == nil, let path = imagePath ?? (configuration.directory.isEmpty ? nil : configuration.directory),
           FileSystem.exists(path) {  // a missing one is reported by the steps below
            // Before the lock (whose files would be left by a hang): a FIFO, socket or device
            // given as the image or tree is refused at once. The later opens check again on
            // their own descriptors (UserFile), so a swap after this check cannot hang either.
            try UserFile.check(path, accepting: imagePath != nil ? .image : .directory)
            // A second run of a running machine is told that (the more precise busy reason)
            // rather than that its tree is locked.
            let name = configuration.machineName
                ?? (imagePath != nil ? try? MountSettings.machineName(forImage: path) : try? configuration.resolvedMachineName)
            if let name, !configuration.uniqueEphemeralName, MachineRegistry().lookup(name) != nil { throw RunnerError.alreadyRunning(name) }
            // A tree or image given by path is locked as nspawn locks it (and as the store locks
            // its own): shared when it is not written (read-only, -x, volatile), else exclusive.
            let readOnly = configuration.readOnly || configuration.ephemeral || configuration.mounts.volatile != .no
            self.lock = try ImageLock.lock(path: path, kind: readOnly ? .shared : .exclusive)
        }
        try EarlyTermination.checkpoint()
        if let imagePath {
            try await mountImage(imagePath, policy: policy, log: log)
        } else if configuration.directory.isEmpty {
            throw Error.noSource
        }
        try applyEphemeralAndVolatile(fromImage: imagePath != nil)
        try makeTemporaries()
    }

    private func mountImage(_ path: String, policy: ImagePolicy?, log: @escaping @Sendable (String) -> Void) async throws {
        if configuration.machineName == nil { configuration.machineName = try MountSettings.machineName(forImage: path) }
        let settings = configuration.mounts
        // Without --image-policy, nspawn's default: verity with a signature nobody trusts runs
        // (with a warning), as plain verity against the root hash.
        let dissected = try await ImageAdmission.admitDisk(path, policy: policy, default: ImageAdmission.containerDefault,
                                                           options: DissectOptions(verity: settings.verity, requireRoot: true),
                                                           keyringDirectory: settings.verityKeyring)
        for trust in dissected.verityTrust { if let warning = trust.warning { log("warning: " + warning) } }
        verityTrust = dissected.verityTrust
        configuration.verityTrust = dissected.verityTrust
        let plan = try MountPlan.make(dissected, readOnly: configuration.readOnly)
        try EarlyTermination.checkpoint()
        let staging = "\(Leftovers.runnerDirectory)/image.\(HostFiles.processID).\(FileSystem.randomHex(6))"
        try FileSystem.makeDirectories(staging + "/root", mode: 0o700)
        imageStaging = staging
        imageRecord = try await ImageMounter.mount(plan, at: staging + "/root", options: ImageMounter.Options(
            mkdir: false, record: false, keyringDirectory: settings.verityKeyring, log: log))
        configuration.directory = staging + "/root"
        description = path
        try EarlyTermination.checkpoint()
    }

    /// -x on a btrfs subvolume: a snapshot beside it (O(1), as nspawn does) that the container
    /// runs on and `close` deletes; on any other file system the child's overlay with a tmpfs
    /// upper layer. --volatile=overlay is that overlay, state a read-only tree with a tmpfs on
    /// /var, yes a tmpfs root with the tree's /usr (made by the child).
    private func applyEphemeralAndVolatile(fromImage: Bool) throws {
        switch configuration.mounts.volatile {
        case .no: break
        case .yes:
            // The tmpfs root has no home directories: start in / unless told otherwise.
            if configuration.workingDirectory == nil { configuration.workingDirectory = "/" }
        case .overlay: configuration.ephemeral = true
        case .state:
            configuration.readOnly = true
            configuration.mounts.extra.insert(.tmpfs(target: "/var", flags: UInt(MS_NODEV | MS_STRICTATIME), data: "mode=0755"), at: 0)
        }
        guard configuration.ephemeral, configuration.mounts.volatile == .no, !fromImage,
              (try? Btrfs.isSubvolume(configuration.directory)) == true else { return }
        if configuration.machineName == nil { configuration.machineName = try configuration.resolvedMachineName }
        let source = configuration.directory
        // Claimed before it exists: a later run removes it only once this claim is free.
        let parent = FileSystem.parentDirectory(source)
        let (name, claim) = try Leftovers.claim(parent: parent, prefix: ".#\(FileSystem.baseName(source)).")
        claims.append(claim)
        let path = "\(parent)/\(name)"
        try Btrfs.snapshot(source, to: path, recursive: true, readOnly: false)
        snapshot = path
        configuration.directory = path
        configuration.ephemeral = false
    }

    /// A fresh directory under /var/tmp (as nspawn puts them), claimed, removed by `close`.
    private func temporaryDirectory(_ what: String) throws -> String {
        let (name, claim) = try Leftovers.claim(parent: Leftovers.temporaryDirectory, prefix: "imagectl-\(what)-")
        claims.append(claim)
        let path = Leftovers.temporaryDirectory + "/" + name
        try FileSystem.makeDirectory(path, mode: 0o700)
        temporaries.append(path)
        return path
    }

    /// Gives every empty bind source and overlay upper layer a temporary directory, and every
    /// overlay with an upper layer a work directory on the same file system (overlayfs needs one):
    /// beside a host upper layer, or beneath the root for a "+" one.
    private func makeTemporaries() throws {
        var resolved: [ExtraMount] = []
        for mount in configuration.mounts.extra {
            switch mount {
            case .bind(nil, let target, let readOnly, let recursive):
                resolved.append(.bind(source: MountPath(path: try temporaryDirectory("bind"), inRoot: false),
                                      target: target, readOnly: readOnly, recursive: recursive))
            case .overlay(let lower, let upper?, _, let target):
                var upperPath = upper
                let work: MountPath
                if upper.path.isEmpty {
                    let dir = try temporaryDirectory("overlay")
                    try FileSystem.makeDirectory(dir + "/upper", mode: 0o755)
                    try FileSystem.makeDirectory(dir + "/work", mode: 0o700)
                    upperPath = MountPath(path: dir + "/upper", inRoot: false)
                    work = MountPath(path: dir + "/work", inRoot: false)
                } else if !upper.inRoot {
                    let parent = FileSystem.parentDirectory(upper.path)
                    let (name, claim) = try Leftovers.claim(parent: parent, prefix: Leftovers.workPrefix)
                    claims.append(claim)
                    let dir = "\(parent)/\(name)"
                    try FileSystem.makeDirectory(dir, mode: 0o700)
                    temporaries.append(dir)
                    work = MountPath(path: dir, inRoot: false)
                } else {
                    work = MountPath(path: try makeWorkBeneathRoot(for: upper.path), inRoot: true)
                }
                resolved.append(.overlay(lower: lower, upper: upperPath, work: work, target: target))
            default:
                resolved.append(mount)
            }
        }
        configuration.mounts.extra = resolved
    }

    /// A work directory beside the "+" upper layer `upper`, made in its parent directory opened
    /// beneath the root (a symlink in the image cannot send it elsewhere). Returns its path
    /// inside the container.
    private func makeWorkBeneathRoot(for upper: String) throws -> String {
        let root = try FileDescriptor.open(configuration.directory, .readOnly, options: [.directory, .closeOnExec])
        defer { try? root.close() }
        let parentPath = FileSystem.parentDirectory(upper)
        let parent = try OpenBeneath.open(parentPath, in: root, flags: O_RDONLY | O_DIRECTORY)
        // lifecycle: claimed like the host-side ones (the parent named through its descriptor);
        // a killed run's is removed by the next run with the same upper layer.
        let parentFD = "/proc/self/fd/\(parent.rawValue)"
        Leftovers.cleanWorkDirectories(in: parentFD)
        let name: String
        do {
            let (claimed, claim) = try Leftovers.claim(parent: parentFD, prefix: Leftovers.workPrefix)
            claims.append(claim)
            name = claimed
            try SessionFiles.makeDirectory(in: parent, name: name, mode: 0o700, what: "an overlay work directory in \(parentPath)")
        } catch {
            try? parent.close()
            throw error
        }
        workBeneathRoot.append((parent, name))
        return (parentPath == "/" ? "" : parentPath) + "/" + name
    }

    /// Pass as `Container.run`'s `started`: a SIGTERM/SIGINT that came while the root was being
    /// prepared is sent on to the container now that imagectl forwards them.
    public func containerStarted(_ plan: Container.Plan) {
        EarlyTermination.replay()
        // lifecycle: the container holds its own copy of an image's mounts (made private in its
        // namespace), so the host's copy goes now: a kill -9 of imagectl then leaves no mount on
        // the host, and the autoclear loop devices detach when the container's namespace goes.
        if let staging = imageStaging, (try? Mount.unmount(staging + "/root", detach: true)) != nil {
            imageDetached = true
        }
    }

    /// Undoes everything `open` did; safe to call more than once.
    public func close() {
        guard !closed else { return }
        closed = true
        for (parent, name) in workBeneathRoot {
            // Through the held descriptor: the directory it names, not whatever the path is now.
            try? FileSystem.removeTree("/proc/self/fd/\(parent.rawValue)/\(name)")
            try? parent.close()
        }
        workBeneathRoot = []
        for path in temporaries.reversed() { try? FileSystem.removeTree(path) }
        temporaries = []
        if let staging = imageStaging {
            if !Mount.mounts(under: staging + "/root").isEmpty { try? ImageMounter.unmount(staging + "/root") }
            if imageDetached, let record = imageRecord {
                // The container's namespace held the last mounts; it is gone now. dm-verity
                // devices are not autoclear: remove them, then let the loop devices go.
                for name in record.dmVerityDevices.reversed() { try? DMVerity.deactivate(name: name) }
                SessionFiles.waitForLoopDetach(record.loopDevices, image: record.image)
            }
            HostFiles.removeDirectory(staging + "/root")
            HostFiles.removeDirectory(staging)
            imageStaging = nil
        }
        if let snapshot { try? Btrfs.deleteSubvolume(snapshot, recursive: true) }
        snapshot = nil
        for claim in claims { claim.releaseRemovingFile() }
        claims = []
        lock?.release()
        lock = nil
    }
}
