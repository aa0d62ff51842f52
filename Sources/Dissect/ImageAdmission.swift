import Foundation

/// The one place that decides, for every runner (`run -D/-i/-M`, `vm`) and every verb that mounts
/// or looks inside an image, what the image policy and the verity options demand and whether the
/// kind of image can satisfy them. Nothing is mounted before it has said yes; callers do not
/// re-implement any part of it.
///
/// - A directory tree has no partitions, no hash tree and no signature: its root counts as an
///   unprotected partition and every other designator as absent, so it satisfies a policy only
///   where that allows `unprotected` for root and `absent` for the rest (`open`, `ignore` for
///   the others, and the default `*`, do). A root hash, usr hash, signature or external hash tree
///   given for a directory cannot be checked against anything and is refused.
/// - A disk image (GPT, MBR, bare file system) is dissected with the verity options, then each
///   designator is checked (`DissectedImage.applying`), with systemd's signature rule.
public enum ImageAdmission {
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case verityForDirectory(path: String, options: [String])
        case policyForDirectory(path: String, ImagePolicy.Error)
        case directoryRootUnused(path: String, policy: String)
        case verity(designator: String, message: String)

        public var description: String {
            switch self {
            case .verityForDirectory(let path, let options):
                return "\(path) is a directory tree, which has no verity: \(options.joined(separator: ", ")) cannot apply (they need a disk image)"
            case .policyForDirectory(let path, let error):
                return "\(error) (\(path) is a directory tree: its root counts as unprotected, every other partition as absent)"
            case .directoryRootUnused(let path, let policy):
                return "image policy \(policy) leaves the root of \(path) unused: nothing to run"
            case .verity(let designator, let message):
                return "verity check of the \(designator) partition failed: \(message)"
            }
        }
    }

    /// systemd-nspawn's default policy (image_policy_container): root and usr may be verity,
    /// signed, encrypted, unprotected or absent; home, srv, tmp and var anything but verity;
    /// the ESP and XBOOTLDR unprotected or absent; everything else ignored.
    public static let containerDefaultPolicyText =
        "root=verity+signed+encrypted+unprotected+absent:usr=verity+signed+encrypted+unprotected+absent:"
        + "home=encrypted+unprotected+absent:srv=encrypted+unprotected+absent:tmp=encrypted+unprotected+absent:"
        + "var=encrypted+unprotected+absent:esp=unprotected+absent:xbootldr=unprotected+absent"

    public static var containerDefault: ImagePolicy {
        // A constant text that the parser's tests cover; a failure here is a programming error
        // that would otherwise silently allow everything.
        (try? ImagePolicy.parse(containerDefaultPolicyText)) ?? (try! ImagePolicy.parse("~"))
    }

    /// The verity options given, by their command-line names.
    public static func givenOptions(_ verity: ExplicitVerityOptions) -> [String] {
        var names: [String] = []
        if verity.rootHash != nil { names.append("--root-hash") }
        if verity.rootHashSignature != nil { names.append("--root-hash-sig") }
        if verity.verityData != nil { names.append("--verity-data") }
        if verity.usrHash != nil { names.append("--usr-hash") }
        if verity.usrHashSignature != nil { names.append("--usr-hash-sig") }
        return names
    }

    /// A directory tree (`-D`, a directory or subvolume image of the pool, a directory given to
    /// a dissect verb): refuses verity options and a policy the tree cannot meet.
    public static func admitDirectory(_ path: String, policy: ImagePolicy?, verity: ExplicitVerityOptions) throws {
        let options = givenOptions(verity)
        guard options.isEmpty else { throw Error.verityForDirectory(path: path, options: options) }
        guard let policy else { return }
        do {
            let rootUse = try policy.check(designator: PartitionDesignator.root.rawValue, protection: .unprotected)
            guard rootUse == .unprotected else { throw Error.directoryRootUnused(path: path, policy: policy.text) }
            for designator in PartitionDesignator.allCases where designator != .root {
                // A tree's root is used unprotected, so its hash tree and signature partitions
                // are not needed: their derived rules (which follow a data partition that might
                // have been verity) do not apply. A rule the policy names for them does.
                let derived = designator.rawValue.hasSuffix("-verity") || designator.rawValue.hasSuffix("-verity-sig")
                if derived && policy.rules[designator.rawValue] == nil { continue }
                try policy.check(designator: designator.rawValue, protection: .absent)
            }
        } catch let error as ImagePolicy.Error {
            throw Error.policyForDirectory(path: path, error)
        }
    }

    /// A verity-protected data partition checked in userspace by `verifyTrees`.
    public struct VerifiedTree: Sendable, Equatable {
        public var designator: PartitionDesignator
        public var rootHash: [UInt8]
        /// The data and hash tree partitions (nil for an external hash tree file).
        public var dataPartitionUUID: UUID?
        public var hashPartitionUUID: UUID?
        public var report: VerityReport
    }

    /// Verifies the whole hash tree of every verity-protected root and usr partition of an
    /// admitted image in userspace, reading the image file directly (for runners that hand the
    /// file to something else, such as qemu, instead of mounting it). Throws naming the first
    /// bad block.
    public static func verifyTrees(_ image: DissectedImage) async throws -> [VerifiedTree] {
        var result: [VerifiedTree] = []
        for designator in [PartitionDesignator.root, .usr] {
            guard let data = image.partition(designator), let requirement = MountPlan.requirement(data, image: image) else { continue }
            let target: VerityTarget
            var hashUUID: UUID?
            if let file = requirement.hashFile {
                target = VerityTarget(dataPath: image.path, dataOffset: data.offset, dataSize: data.size, hashPath: file,
                                      hashSize: (try? VerityFile(path: file).size) ?? 0)
            } else {
                hashUUID = designator.verityDesignator.flatMap(image.partition)?.uuid
                target = VerityTarget(dataPath: image.path, dataOffset: data.offset, dataSize: data.size, hashPath: image.path,
                                      hashOffset: requirement.hashOffset ?? 0, hashSize: requirement.hashSize ?? 0)
            }
            do {
                let report = try await VerityVerifier.verify(target, rootHash: requirement.rootHash)
                result.append(VerifiedTree(designator: designator, rootHash: requirement.rootHash, dataPartitionUUID: data.uuid,
                                           hashPartitionUUID: hashUUID, report: report))
            } catch {
                throw Error.verity(designator: designator.rawValue, message: "\(error)")
            }
        }
        return result
    }

    /// A disk image: dissected with the verity options, then held against the policy (nil: the
    /// caller's default, `*` unless it passes another). Returns the image as it may be used:
    /// partitions the policy leaves unused removed, untrusted signatures dropped (verity only),
    /// and `verityTrust` filled in.
    public static func admitDisk(_ path: String, policy: ImagePolicy?, default defaultPolicy: ImagePolicy = .allowAll,
                                 options: DissectOptions, keyringDirectory: String) async throws -> DissectedImage {
        let dissected = try Dissector.dissect(path: path, options: options)
        return try await dissected.applying(policy ?? defaultPolicy, keyringDirectory: keyringDirectory)
    }
}
