import Foundation
import LinuxSystem
import ProgressReport

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
        try copyTree(source, to: temporary, progress: job.progress)
        return Importer.Outcome(sha256: nil, format: "directory")
    }

    /// Copies the contents of `source` (and the attributes of `source` itself) into the existing
    /// directory `destination` with GNU cp: `-a` keeps owners, modes, times, hard links, xattrs and
    /// ACLs; reflinks are used where the file system can, and holes stay holes.
    ///
    /// `progress` (bar or JSON only) is given the tree's size first, then the bytes cp has read
    /// so far, from /proc/PID/io (`rchar` counts read(2) and copy_file_range(2); a reflinked
    /// file counts nothing, so the bar may end short of 100%).
    static func copyTree(_ source: String, to destination: String, progress: ProgressReporter? = nil) throws {
        let watched = progress.flatMap { $0.style == .bar || $0.style == .json ? $0 : nil }
        if let watched { watched.setTotal(treeSize(source)) }
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
        let poller = watched.map { ReadPoller(pid: process.processIdentifier, progress: $0) }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        // cp closed its standard error: it has exited (not yet reaped, so the PID is still its).
        poller?.stop()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message.prefix(4096), as: UTF8.self)
                .split(separator: "\n").first.map(String.init) ?? "cp exited with status \(process.terminationStatus)"
            throw Error.copyFailed(text)
        }
    }
}

extension FilesystemImport {
    /// The apparent size of the regular files under `path` (symlinks not followed).
    static func treeSize(_ path: String) -> UInt64 {
        let keys: [URLResourceKey] = [.isRegularFileKey, .fileSizeKey]
        guard let walk = FileManager.default.enumerator(at: URL(fileURLWithPath: path), includingPropertiesForKeys: keys,
                                                        options: [], errorHandler: { _, _ in true }) else { return 0 }
        var total: UInt64 = 0
        for case let url as URL in walk {
            guard let values = try? url.resourceValues(forKeys: Set(keys)), values.isRegularFile == true else { continue }
            total += UInt64(max(0, values.fileSize ?? 0))
        }
        return total
    }

    /// Tells `progress` how many bytes process `pid` has read, ten times a second, until stopped.
    final class ReadPoller: @unchecked Sendable {
        // `stopped` is guarded by `lock`; `done` is signalled once by the polling thread.
        private let lock = NSLock()
        private var stopped = false
        private let done = DispatchSemaphore(value: 0)

        init(pid: Int32, progress: ProgressReporter) {
            let thread = Thread { [self] in
                var reported: UInt64 = 0
                while !lock.withLock({ stopped }) {
                    if let read = Self.bytesRead(pid), read > reported {
                        progress.add(read - reported)
                        reported = read
                    }
                    Thread.sleep(forTimeInterval: 0.1)
                }
                done.signal()
            }
            thread.name = "imagectl-import-fs-progress"
            thread.start()
        }

        func stop() {
            lock.withLock { stopped = true }
            done.wait()
        }

        /// `rchar` of /proc/PID/io.
        static func bytesRead(_ pid: Int32) -> UInt64? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) else { return nil }
            for line in text.split(separator: "\n") where line.hasPrefix("rchar:") {
                return UInt64(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
            }
            return nil
        }
    }
}
