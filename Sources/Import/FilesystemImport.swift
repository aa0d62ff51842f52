import Foundation
import LinuxSystem

/// `import-fs`: a directory tree into the pool.
enum FilesystemImport {
    enum Error: Swift.Error, CustomStringConvertible {
        case notADirectory(String)
        case copyFailed(String)

        var description: String {
            switch self {
            case .notADirectory(let path): "\(path) is not a directory"
            case .copyFailed(let why): "copying the tree failed: \(why)"
            }
        }
    }

    /// Snapshots `source` into `temporary` when both are on the same btrfs file system and the
    /// source is a subvolume (O(1)); otherwise copies the tree.
    static func run(source: String, to temporary: String, job: ImportJob) throws -> Importer.Outcome {
        if (try? Btrfs.isSubvolume(source)) == true, (try? Btrfs.isSubvolume(temporary)) == true,
           let a = try? Btrfs.filesystemUUID(source), let b = try? Btrfs.filesystemUUID(temporary), a == b {
            // The store made the temporary an empty subvolume; the snapshot takes its place.
            try Btrfs.deleteSubvolume(temporary, recursive: false)
            try Btrfs.snapshot(source, to: temporary, recursive: true, readOnly: false)
            return Importer.Outcome(sha256: nil, format: "directory (btrfs snapshot)")
        }
        try job.checkCancelled()
        try copyTree(source, to: temporary)
        return Importer.Outcome(sha256: nil, format: "directory")
    }

    /// Copies the contents of `source` (and the attributes of `source` itself) into the existing
    /// directory `destination` with GNU cp: `-a` keeps owners, modes, times, hard links, xattrs and
    /// ACLs; reflinks are used where the file system can, and holes stay holes.
    static func copyTree(_ source: String, to destination: String) throws {
        let process = Process()
        let copy = ["/bin/cp", "-a", "--reflink=auto", "--sparse=auto", "--no-target-directory", "--", source + "/.", destination]
        // cp must die with imagectl: an import killed with -9 would otherwise leave cp writing
        // into the temporary, which then outlives `clean` (issue 16). util-linux's setpriv sets
        // PR_SET_PDEATHSIG before it executes cp (Foundation's Process cannot).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--pdeathsig", "KILL", "--"] + copy
        } else {
            process.executableURL = URL(fileURLWithPath: copy[0])
            process.arguments = Array(copy.dropFirst())
        }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw Error.copyFailed("cannot run /bin/cp: \(error)")
        }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message.prefix(4096), as: UTF8.self)
                .split(separator: "\n").first.map(String.init) ?? "cp exited with status \(process.terminationStatus)"
            throw Error.copyFailed(text)
        }
    }
}
