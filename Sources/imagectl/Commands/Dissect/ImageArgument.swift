import ArgumentParser
import Dissect
import Foundation
import ImageStore
import LinuxSystem

/// Shared by the dissect verbs: turning the IMAGE argument into a path, the verity options, the
/// image policy, and dissecting with them.
enum ImageArgument {
    /// IMAGE may be a path (file, block device, directory) or the name of an image in the pool
    /// (--root / $IMAGECTL_ROOT, else the system search path), found as every verb finds it
    /// (ImageLookup, FORMATS.md §3).
    static func resolve(_ argument: String, store: StoreOptions) throws -> String {
        let reference: ImageLookup.Reference
        do {
            reference = try ImageLookup.resolve(argument, root: store.explicitRoot)
        } catch ImageStore.Error.permissionDenied(let pool) {
            throw ImageStore.Error.permissionDenied(pool)
        } catch {
            let pools = ImageLookup.searchPath(root: store.explicitRoot).map(\.path)
            throw CommandFailure(message: "no image \(argument): not a path and not in \(pools.joined(separator: ", "))")
        }
        switch reference {
        case .image(let image):
            return image.path
        case .path(let path):
            // lstat rather than fileExists: a file in a directory this user may not search is
            // "permission denied", not "no such file".
            guard try FileStatus.lstatIfPresent(path) != nil else {
                throw CommandFailure(message: "\(path): no such file or directory")
            }
            // A FIFO, socket or character device is refused here, before any lock, loop device
            // or mount; the opens that follow check their own descriptors again (UserFile).
            try UserFile.check(path, accepting: [.regular, .blockDevice, .directory])
            return path
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Runs `body` on the image's assembled tree: a directory image as it is, a disk image
    /// mounted privately (and torn down afterwards).
    static func withTree<T: Sendable>(_ path: String, verity: VerityOptions, readOnly: Bool,
                                      _ body: (String) async throws -> T) async throws -> T {
        let dissected = try await verity.dissect(path)  // the policy and verity options, for a tree too
        if isDirectory(path) { return try await body(path) }
        guard canMount else { throw CommandFailure(message: "looking inside a disk image needs root and loop devices (/dev/loop-control)") }
        let plan = try MountPlan.make(dissected, readOnly: readOnly)
        return try await ImageTree.withTemporaryMount(plan, keyringDirectory: verity.verityKeyring, body)
    }

    /// True when this process may set up loop devices and mounts.
    static var canMount: Bool {
        geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control")
    }
}

/// Where the root hash, its signature and the hash tree come from when given on the command line
/// (FORMATS.md section 2, step 1); shared by `verify` and the other dissect verbs.
struct VerityHashOptions: ParsableArguments {
    @Option(name: .customLong("root-hash"), help: ArgumentHelp("Root hash of the root partition's verity tree (or of a data file), hex; overrides xattr and sidecar.", valueName: "hex"))
    var rootHash: String?

    @Option(name: .customLong("root-hash-sig"), help: ArgumentHelp("PKCS#7 signature of the root hash: a DER file, or base64:DATA.", valueName: "path|base64:..."))
    var rootHashSignature: String?

    @Option(name: .customLong("verity-data"), help: ArgumentHelp("File holding the verity hash tree, with its superblock (for an image without a verity partition).", valueName: "path"))
    var verityData: String?

    @Option(name: .customLong("usr-hash"), help: ArgumentHelp("Root hash of the usr partition's verity tree (hex).", valueName: "hex"))
    var usrHash: String?

    var explicit: ExplicitVerityOptions {
        ExplicitVerityOptions(rootHash: rootHash, rootHashSignature: rootHashSignature, verityData: verityData, usrHash: usrHash)
    }
}

/// Verity and policy options shared by the dissect verbs.
struct VerityOptions: ParsableArguments {
    @OptionGroup var hashes: VerityHashOptions

    @Option(name: .customLong("image-policy"), help: ArgumentHelp("Image policy in systemd's syntax (e.g. root=verity+signed:=absent); an image that does not comply is refused before anything is mounted.", valueName: "policy"))
    var imagePolicy: String?

    @Option(name: .customLong("verity-keyring"), help: ArgumentHelp("Directory of trusted certificates for root hash signatures (default /etc/verity.d).", valueName: "dir"))
    var verityKeyring: String = VeritySignatureCheck.defaultKeyringDirectory

    var explicit: ExplicitVerityOptions { hashes.explicit }

    /// Dissects `path` (file, block device or directory) and applies the image policy.
    func dissect(_ path: String, requireRoot: Bool = true) async throws -> DissectedImage {
        let policy = try imagePolicy.map { try ImagePolicy.parse($0) }
        if ImageArgument.isDirectory(path) {
            try ImageAdmission.admitDirectory(path, policy: policy, verity: explicit)
            return DissectedImage.directory(path)
        }
        return try await ImageAdmission.admitDisk(path, policy: policy, options: DissectOptions(verity: explicit, requireRoot: requireRoot),
                                                  keyringDirectory: verityKeyring)
    }
}
