import ArgumentParser
import Dissect
import Foundation

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
            all cores; a root hash signature (root-verity-sig partition, .roothash.p7s, --root-hash-sig) \
            must be by a certificate in the keyring directory. Exit status 0 only when everything \
            matched; otherwise one error line naming the first bad block.
            """)

    @Argument(help: "GPT image, block device, data file, or pool image name.")
    var image: String

    @OptionGroup var hashes: VerityHashOptions

    @Option(name: .customLong("verity-keyring"), help: ArgumentHelp("Directory of trusted certificates (PEM or DER) for root hash signatures (default /etc/verity.d).", valueName: "dir"))
    var verityKeyring: String?

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
        var report: VerityReport
    }

    func run() async throws {
        let path = try ImageArgument.resolve(image, store: store)
        let plans = try plan(path: path, explicit: hashes.explicit)
        var results: [Result] = []
        for plan in plans {
            do {
                results.append(try await check(plan))
            } catch {
                throw CommandFailure(message: "\(plan.designator): \(error)")
            }
        }
        if output.json {
            try Output.printJSON(results)
        } else {
            for result in results { printResult(result) }
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

    /// Checks the signature (when there is one) first: it is cheap and says whether the root hash
    /// can be trusted at all; then the whole tree.
    func check(_ plan: Plan) async throws -> Result {
        var signatureStatus = "none"
        var signer: String?
        if let signature = plan.signature {
            let keyring = verityKeyring ?? VeritySignatureCheck.defaultKeyringDirectory
            var isDirectory: ObjCBool = false
            if verityKeyring == nil, !(FileManager.default.fileExists(atPath: keyring, isDirectory: &isDirectory) && isDirectory.boolValue) {
                // No keyring configured on this machine: say so rather than pretend either way.
                signatureStatus = "present, not checked (no keyring \(keyring); use --verity-keyring=DIR)"
            } else {
                signer = try await VeritySignatureCheck.check(rootHashHex: VerityHex.encode(plan.rootHash), pkcs7DER: signature,
                                                              keyringDirectory: keyring, certificateFingerprint: plan.fingerprint)
                signatureStatus = "valid"
            }
        }
        let report = try await VerityVerifier.verify(plan.target, rootHash: plan.rootHash)
        return Result(designator: plan.designator, data: plan.dataDescription, hashTree: plan.hashDescription,
                      rootHash: report.rootHash, rootHashSource: plan.rootHashSource, signature: signatureStatus,
                      signer: signer, signatureSource: plan.signatureSource, report: report)
    }

    func printResult(_ r: Result) {
        var lines = ["\(r.designator): verified"]
        lines.append("  data:       \(r.data)")
        lines.append("  hash tree:  \(r.hashTree), \(r.report.algorithm), type \(r.report.hashType), blocks \(r.report.dataBlockSize)/\(r.report.hashBlockSize), \(r.report.levels) levels")
        lines.append("  root hash:  \(r.rootHash) (from \(r.rootHashSource))")
        var signature = "  signature:  \(r.signature)"
        if let signer = r.signer { signature += ", signed by \(signer)" }
        if let source = r.signatureSource { signature += " (from \(source))" }
        lines.append(signature)
        lines.append(String(format: "  checked:    %llu blocks, %@ in %.3f s (%.0f MB/s)", r.report.blocksChecked,
                            Output.size(r.report.bytesChecked), r.report.seconds, r.report.megabytesPerSecond))
        Terminal.standardOutput(lines.joined(separator: "\n") + "\n")
    }

    func fileSize(_ path: String) throws -> UInt64 {
        try VerityTarget.files(data: path, hash: path).hashSize
    }
}
