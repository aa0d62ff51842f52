import Foundation

/// Detached OpenPGP signatures over a checksum file, checked with gpgv (SECURITY.md 9): against a
/// keyring file only, with a throw-away home directory (so no user configuration, trust database
/// or agent is involved), never importing a key from the download. gpgv is started by Foundation's
/// Process with a clean environment; every descriptor this process opens is close-on-exec
/// (O_CLOEXEC here and in libcurl), so gpgv inherits only its standard input, output and error.
enum SignatureCheck {
    /// systemd-importd's keyrings, in order.
    static let defaultKeyrings = ["/etc/systemd/import-pubring.gpg", "/usr/lib/systemd/import-pubring.gpg"]

    /// The keyring to use: the one given (which must exist), else the first default that exists.
    static func keyring(_ given: String?) throws -> String {
        if let given {
            let absolute = given.hasPrefix("/") ? given : FileManager.default.currentDirectoryPath + "/" + given
            guard FileManager.default.isReadableFile(atPath: absolute) else { throw PullError.noKeyring(tried: [absolute]) }
            return absolute
        }
        guard let found = defaultKeyrings.first(where: { FileManager.default.isReadableFile(atPath: $0) }) else {
            throw PullError.noKeyring(tried: defaultKeyrings)
        }
        return found
    }

    static func gpgvPath() throws -> String {
        for candidate in ["/usr/bin/gpgv", "/bin/gpgv", "/usr/local/bin/gpgv"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw PullError.gpgvMissing
    }

    /// Verifies `signature` (armored or binary) over `data`; throws `PullError.badSignature` with
    /// gpgv's reason when it does not verify.
    static func verify(data: [UInt8], signature: [UInt8], signatureName: String, keyring: String) throws {
        let gpgv = try gpgvPath()
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("imagectl-gpg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: home) }
        let dataPath = home.appendingPathComponent("data")
        let signaturePath = home.appendingPathComponent("signature")
        try Data(data).write(to: dataPath)
        try Data(signature).write(to: signaturePath)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: gpgv)
        process.arguments = ["--homedir", home.path, "--keyring", keyring, signaturePath.path, dataPath.path]
        process.environment = ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": home.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // gpgv's output is a few lines; reading it all before waiting cannot deadlock.
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let reason = text.split(separator: "\n").map { $0.replacingOccurrences(of: "gpgv: ", with: "") }
                .filter { !$0.contains("Signature made") && !$0.contains("using ") && !$0.contains("keybox") }
                .joined(separator: "; ")
            throw PullError.badSignature(signatureName, detail: reason.isEmpty ? "gpgv exited with \(process.terminationStatus)" : reason)
        }
    }
}
