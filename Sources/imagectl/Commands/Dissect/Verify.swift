import ArgumentParser
import Dissect
import Foundation
import ProgressReport

/// `imagectl verify IMAGE`: userspace dm-verity verification of the whole hash tree of an
/// image's root and/or usr partition (or of a data file with --verity-data), plus the root hash
/// signature when there is one. Works without device-mapper.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify an image's dm-verity hash tree and root hash signature in userspace.",
        discussion: """
            IMAGE is a GPT disk image (its root and usr partitions are checked against their verity \
            partitions, or root against --verity-data / the .verity sidecar), or a plain data file \
            whose hash tree is given with --verity-data (or IMAGE.verity). The root hash comes from \
            --root-hash, the user.verity.roothash xattr, the .roothash sidecar, or the \
            root-verity-sig partition (FORMATS.md §2 order). Every data and hash block is hashed, on \
            all cores. The root hash is authenticated when it comes from --root-hash, the xattr or a \
            sidecar, or when its signature (root-verity-sig partition, .roothash.p7s, \
            --root-hash-sig) is by a certificate in the keyring directory; a root hash the image \
            supplied itself with an untrusted signature makes the tree only "consistent". Exit \
            status 0 only when everything matched and was authenticated (or --image-policy allows \
            unsigned verity); otherwise one error line (naming the first bad block, or saying \
            "not authenticated").
            """)

    @Argument(help: "GPT image, block device, data file, or pool image name.")
    var image: String

    @OptionGroup var hashes: VerityHashOptions

    @Option(name: .customLong("verity-keyring"), help: ArgumentHelp("Directory of trusted certificates (PEM or DER) for root hash signatures (default /etc/verity.d).", valueName: "dir"))
    var verityKeyring: String?

    @Option(name: .customLong("image-policy"), help: ArgumentHelp("Image policy in systemd's syntax; one allowing verity (e.g. root=verity) makes a tree that is only consistent with a root hash the image supplied itself exit 0 (still reported as not authenticated).", valueName: "policy"))
    var imagePolicy: String?

    @OptionGroup var output: OutputOptions
    @OptionGroup var store: StoreOptions

    /// One verified area, as printed and as JSON.
    struct Result: Encodable {
        var designator: String
        var data: String
        var hashTree: String
        var rootHash: String
        var rootHashSource: String
        var signature: String
        var signer: String?
        var signatureSource: String?
        /// signed-and-trusted or verity-only.
        var protection: VerityOutcome
        /// True when the root hash is one somebody trusted: given as an option, a sidecar or
        /// xattr beside the image, or signed by a certificate in the keyring. False when the
        /// tree only matches a root hash the image supplied itself.
        var authenticated: Bool
        /// The one line saying which, and why.
        var trust: String
        /// Which verity path the check took (always userspace, once), and what mount and run
        /// would use here.
        var path: String
        var report: VerityReport
    }

    func run() async throws {
        let policy = try imagePolicy.map { try ImagePolicy.parse($0) }
        let path = try ImageArgument.resolve(image, store: store)
        if ImageArgument.isDirectory(path) {
            try ImageAdmission.admitDirectory(path, policy: policy, verity: hashes.explicit)
            throw CommandFailure(message: "\(path) is a directory tree: it has no verity to verify")
        }
        let plans = try plan(path: path, explicit: hashes.explicit)
        var results: [Result] = []
        // The bar while hashing; off a terminal nothing, since the report's "checked:" line is
        // the final line. With --json the events go to standard error (the results own stdout).
        let progress = output.progressReporter(eventsAreOutput: false)
        for plan in plans {
            progress.begin("verify", plan.designator)
            do {
                results.append(try await check(plan, progress: progress))
            } catch {
                progress.finish()
                throw CommandFailure(message: "\(plan.designator): \(error)")
            }
            if progress.style == .json {
                progress.end("verify", plan.designator, bytes: results.last?.report.bytesChecked)
            } else {
                progress.finish()
            }
        }
        if output.json {
            try output.printJSON(results)
        } else if !output.quiet {
            for result in results { printResult(result) }
        }
        // Exit 0 only for an authenticated root hash, unless the policy accepts unsigned verity
        // for that partition (systemd's rule for an untrusted signature).
        for result in results where !result.authenticated {
            let designator = result.designator == "data" ? "root" : result.designator
            if let policy, (try? policy.check(designator: designator, protection: .verity)) == .verity { continue }
            throw CommandFailure(message: "\(result.designator): not authenticated: \(result.trust)")
        }
    }

    /// What to verify: the area, the hash and signature, and where each came from.
    struct Plan {
        var designator: String
        var target: VerityTarget
        var dataDescription: String
        var hashDescription: String
        var rootHash: [UInt8]
        var rootHashSource: String
        var signature: [UInt8]?
        var signatureSource: String?
        var fingerprint: [UInt8]?
    }

    func plan(path: String, explicit: ExplicitVerityOptions) throws -> [Plan] {
        let dissected: DissectedImage
        do {
            dissected = try Dissector.dissect(path: path, options: DissectOptions(verity: explicit, requireRoot: false))
        } catch let error as Dissector.Error {
            // Not a disk image: a plain data file with an external hash tree.
            guard case .noPartitionTableOrFilesystem = error else { throw error }
            let settings = try VerityDiscovery.discover(imagePath: path, isBlockDevice: false, explicit: explicit)
            return [try dataFilePlan(path: path, settings: settings)]
        }
        if dissected.table == .none {
            // A bare filesystem: the whole file is the data, the tree is external.
            return [try dataFilePlan(path: path, settings: dissected.verity)]
        }
        var plans: [Plan] = []
        for designator in [PartitionDesignator.root, .usr] {
            guard let data = dissected.partition(designator) else { continue }
            let known = dissected.verity.hash(for: designator.rawValue)
            let hashArea: (path: String, offset: UInt64, size: UInt64, description: String)
            if let verityDesignator = designator.verityDesignator, let hash = dissected.partition(verityDesignator) {
                hashArea = (path, hash.offset, hash.size, "partition \(hash.number ?? 0) (\(verityDesignator.rawValue), \(hash.size) bytes at offset \(hash.offset))")
            } else if designator == .root, let external = dissected.verity.verityDataPath {
                hashArea = (external, 0, try fileSize(external), "\(external) (\(dissected.verity.verityDataSource ?? "external"))")
            } else {
                continue
            }
            guard let rootHash = known.hash else {
                throw CommandFailure(message: "\(designator.rawValue): no root hash known for the verity-protected partition (give --\(designator == .usr ? "usr" : "root")-hash=, a sidecar, the xattr, or a signature partition)")
            }
            plans.append(Plan(
                designator: designator.rawValue,
                target: VerityTarget(dataPath: path, dataOffset: data.offset, dataSize: data.size, hashPath: hashArea.path,
                                     hashOffset: hashArea.offset, hashSize: hashArea.size),
                dataDescription: "partition \(data.number ?? 0) (\(designator.rawValue), \(data.size) bytes at offset \(data.offset))",
                hashDescription: hashArea.description, rootHash: rootHash, rootHashSource: known.source ?? "option",
                signature: known.signature, signatureSource: known.signatureSource, fingerprint: known.fingerprint))
        }
        guard !plans.isEmpty else {
            throw CommandFailure(message: "\(path): no verity-protected root or usr partition (and no --verity-data)")
        }
        return plans
    }

    func dataFilePlan(path: String, settings: VeritySettings) throws -> Plan {
        guard let hashPath = settings.verityDataPath else {
            throw CommandFailure(message: "\(path) is not a disk image with verity partitions: give its hash tree with --verity-data=PATH")
        }
        guard let rootHash = settings.rootHash else {
            throw CommandFailure(message: "no root hash for \(path): give --root-hash=HEX (or a .roothash sidecar or user.verity.roothash xattr)")
        }
        let target = try VerityTarget.files(data: path, hash: hashPath)
        return Plan(designator: "data", target: target, dataDescription: "\(path) (\(target.dataSize) bytes)",
                    hashDescription: "\(hashPath) (\(settings.verityDataSource ?? "option"))", rootHash: rootHash,
                    rootHashSource: settings.rootHashSource ?? "option", signature: settings.rootHashSignature,
                    signatureSource: settings.signatureSource, fingerprint: settings.rootHashCertificateFingerprint)
    }

    /// Judges the signature (when there is one) first: it is cheap and says whether the root hash
    /// can be trusted at all; then the whole tree. A root hash the image supplied itself (the
    /// signature partition) is authenticated only by a trusted signature: anybody can write a
    /// matching hash and a signature by their own certificate into an image.
    func check(_ plan: Plan, progress: ProgressReporter? = nil) async throws -> Result {
        var signatureStatus = "none"
        var signer: String?
        var trusted = false
        var untrustedReason: String?
        let keyring = verityKeyring ?? VeritySignatureCheck.defaultKeyringDirectory
        if let signature = plan.signature {
            switch await VeritySignatureCheck.evaluate(rootHashHex: VerityHex.encode(plan.rootHash), pkcs7DER: signature,
                                                       keyringDirectory: keyring, certificateFingerprint: plan.fingerprint) {
            case .trusted(let who):
                signer = who
                trusted = true
                signatureStatus = "valid"
            case .untrusted(let who, let reason):
                signer = who
                untrustedReason = reason
                signatureStatus = "not trusted: \(reason)"
            }
        }
        let selfSupplied = plan.rootHashSource.hasPrefix("signature partition")
        let authenticated = trusted || !selfSupplied
        let trust: String
        if trusted {
            trust = "authenticated: the root hash is signed by \(signer ?? "?"), a certificate in \(keyring)"
        } else if !selfSupplied {
            trust = "authenticated: the root hash comes from \(plan.rootHashSource), not from the image"
        } else {
            trust = "consistent only: the hash tree matches a root hash the image supplied itself (\(plan.rootHashSource)), "
                + "whose signature by \(signer ?? "an unnamed signer") is not trusted (\(untrustedReason ?? "no signature")); "
                + "give --root-hash=, or add the signer's certificate to the keyring (--verity-keyring=)"
        }
        let report = try await VerityVerifier.verify(plan.target, rootHash: plan.rootHash, progress: progress)
        return Result(designator: plan.designator, data: plan.dataDescription, hashTree: plan.hashDescription,
                      rootHash: report.rootHash, rootHashSource: plan.rootHashSource, signature: signatureStatus,
                      signer: signer, signatureSource: plan.signatureSource,
                      protection: trusted ? .signedAndTrusted : .verityOnly, authenticated: authenticated, trust: trust,
                      path: Self.pathDescription(dmVerity: DMVerity.isAvailable),
                      report: report)
    }

    /// Which verity path this check was. verify always hashes in userspace (it reads the file
    /// once, and needs no device-mapper); what `mount` and `run` do with the image depends on
    /// whether device-mapper exists, so that is said too.
    static func pathDescription(dmVerity: Bool) -> String {
        "userspace: every block hashed once now; later changes to the file are not seen by this check"
            + (dmVerity ? " (mount and run use dm-verity here, which checks every read)"
                        : " (no device-mapper here: mount and run check in userspace too)")
    }

    func printResult(_ r: Result) {
        // "verified" only for a root hash somebody trusted; otherwise the tree is merely consistent.
        var lines = [r.authenticated ? "\(r.designator): verified (authenticated)" : "\(r.designator): consistent only, not authenticated"]
        lines.append("  trust:      \(r.trust)")
        lines.append("  protection: \(r.protection.rawValue)")
        lines.append("  data:       \(r.data)")
        lines.append("  hash tree:  \(r.hashTree), \(r.report.algorithm), type \(r.report.hashType), blocks \(r.report.dataBlockSize)/\(r.report.hashBlockSize), \(r.report.levels) levels")
        lines.append("  root hash:  \(r.rootHash) (from \(r.rootHashSource))")
        var signature = "  signature:  \(r.signature)"
        if let signer = r.signer { signature += ", signed by \(signer)" }
        if let source = r.signatureSource { signature += " (from \(source))" }
        lines.append(signature)
        lines.append("  path:       \(r.path)")
        lines.append(String(format: "  checked:    %llu blocks, %@ in %.3f s (%.0f MB/s)", r.report.blocksChecked,
                            Output.size(r.report.bytesChecked), r.report.seconds, r.report.megabytesPerSecond))
        Terminal.standardOutput(lines.joined(separator: "\n") + "\n")
    }

    func fileSize(_ path: String) throws -> UInt64 {
        try VerityTarget.files(data: path, hash: path).hashSize
    }
}
