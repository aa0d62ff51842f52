import Foundation
import LinuxSystem
import ProgressReport
import SystemPackage

extension ImageStore {
    /// Writes directory or subvolume image `name` as a pax tarball to `file` ("-" for standard
    /// output), compressed per `compression` (default: from the file suffix). The file is written
    /// under a `.#` name beside it and renamed into place when complete; an existing file is not
    /// replaced.
    /// `progress` is told the bytes of file data read (the caller begins and ends its phase).
    /// `reproducible`: without access and change times (and gzip's time stamp), so that the same
    /// tree gives the same bytes (push-oci's layers).
    public func exportTar(_ name: String, to file: String, compression: ExportCompression? = nil,
                          progress: ProgressReporter? = nil, reproducible: Bool = false) async throws {
        let (image, lock) = try self.lock(named: name, kind: .shared)
        defer { lock.release() }
        guard image.type == .directory || image.type == .subvolume else {
            throw Error.unsupported("export-tar needs a directory or subvolume image; '\(image.name)' is \(image.type.rawValue) (use export-raw)")
        }
        let chosen = compression ?? ExportCompression.fromSuffix(file)
        let path = image.targetPath
        try await Blocking.run {
            try Self.writeOutput(file) { fd in
                let exporter = try ArchiveExporter(fd: fd.rawValue, format: "pax", compression: chosen, reproducible: reproducible)
                exporter.progress = progress
                try exporter.writeTree(path)
                try exporter.finish()
            }
        }
    }

    /// Writes raw or block image `name` to `file` ("-" for standard output): compressed per
    /// `compression` (default: from the suffix) through libarchive, or, uncompressed, as a sparse
    /// copy (reflinked where the filesystem allows).
    /// `progress` is told the image's size before the copy and the bytes done during it.
    public func exportRaw(_ name: String, to file: String, compression: ExportCompression? = nil,
                          progress: ProgressReporter? = nil) async throws {
        let (image, lock) = try self.lock(named: name, kind: .shared)
        defer { lock.release() }
        guard image.type == .raw || image.type == .block else {
            throw Error.unsupported("export-raw needs a raw or block image; '\(image.name)' is \(image.type.rawValue) (use export-tar)")
        }
        let chosen = compression ?? ExportCompression.fromSuffix(file)
        let size = image.type == .block ? try FileSystem.blockDeviceSize(image.path) : try FileStatus.stat(image.path).size
        let source = image
        progress?.setTotal(size)
        try await Blocking.run {
            let input = try FileDescriptor.open(source.targetPath, .readOnly, options: [.closeOnExec])
            defer { try? input.close() }
            try Self.writeOutput(file) { fd in
                if chosen == .uncompressed {
                    try FileCopy.copyData(from: input.rawValue, to: fd.rawValue, size: file == "-" || source.type == .block ? size : nil,
                                          reflink: file != "-", path: file, progress: progress.map { p in { p.add($0) } })
                } else {
                    let exporter = try ArchiveExporter(fd: fd.rawValue, format: "raw", compression: chosen)
                    exporter.progress = progress
                    try exporter.writeRaw(from: input, size: size, name: source.name + ".raw")
                    try exporter.finish()
                }
            }
        }
    }

    /// Runs `body` on the output: standard output for "-", else a file that appears under its
    /// name only when complete, without replacing anything:
    /// - an unnamed O_TMPFILE in the output's directory, fsynced and then given its name with
    ///   linkat(2): a process killed meanwhile leaves nothing at all;
    /// - where the file system has no O_TMPFILE (vfat, some network file systems), a
    ///   `.#NAME.<16 hex>` temporary beside it, OFD-locked while it is written and renamed into
    ///   place. A killed export leaves that name behind; the next export to the same path removes
    ///   every such leftover nobody holds a lock on.
    static func writeOutput(_ file: String, useAnonymousFile: Bool = true, _ body: (FileDescriptor) throws -> Void) throws {
        if file == "-" {
            try body(FileDescriptor.standardOutput)
            return
        }
        if FileSystem.exists(file) { throw Error.unsupported("'\(file)' already exists") }
        let directory = FileSystem.parentDirectory(file)
        // Said here with both paths: the failing open below would name only the directory.
        let status: FileStatus
        do {
            status = try FileStatus.stat(directory)
        } catch {
            guard error.errno == .noSuchFileOrDirectory else { throw error }
            throw Error.unsupported("cannot write '\(file)': the directory '\(directory)' does not exist")
        }
        if status.kind != .directory { throw Error.unsupported("cannot write '\(file)': '\(directory)' is not a directory") }
        if useAnonymousFile, let fd = try AnonymousFile.open(in: directory, mode: 0o644) {
            do {
                try body(fd)
                try FileSystem.synchronize(fd, path: file)
                try linkIntoPlace(fd, file)
                try fd.close()
            } catch {
                try? fd.close()
                throw error
            }
            try FileSystem.synchronize(directory)
            return
        }
        // Only this fallback makes named temporaries, so only here can a killed export have left
        // some (the file system is the same one every time).
        removeStaleExportTemporaries(of: file)
        let temporary = "\(directory)/.#\(FileSystem.baseName(file)).\(FileSystem.randomHex(8))"
        let fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        do {
            // Held until the descriptor closes, so that a concurrent export of the same path does
            // not take this file for a leftover.
            _ = try FileLock.setLock(fd, kind: .exclusive, path: temporary)
            try body(fd)
            try FileSystem.synchronize(fd, path: temporary)
            try Mutations.renameNoReplace(temporary, to: file, name: file)
            try fd.close()
        } catch {
            try? fd.close()
            try? FileSystem.removeFileIfPresent(temporary)
            if case Error.exists = error { throw Error.unsupported("'\(file)' already exists") }
            throw error
        }
    }

    /// linkat(2) of the finished anonymous file to `file`; an existing `file` stays as it is.
    private static func linkIntoPlace(_ fd: FileDescriptor, _ file: String) throws {
        do {
            try AnonymousFile.link(fd, to: file)
        } catch {
            guard error.errno == .fileExists else { throw error }
            throw Error.unsupported("'\(file)' already exists")
        }
    }

    /// Removes `.#NAME.<16 hex>` beside `file` left by a killed export of the same path, skipping
    /// any that a running export holds locked. Best effort: a leftover that cannot be removed
    /// does not stop a new export.
    static func removeStaleExportTemporaries(of file: String) {
        let directory = FileSystem.parentDirectory(file)
        let prefix = ".#" + FileSystem.baseName(file) + "."
        guard let entries = try? FileSystem.entries(directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            let rest = entry.dropFirst(prefix.count)
            guard rest.count == 16, rest.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { continue }
            let path = directory + "/" + entry
            guard let status = try? FileStatus.lstat(path), status.kind == .regular,
                  let lock = try? FileLock.tryLock(path: path, kind: .exclusive, create: false) else { continue }
            lock.releaseRemovingFile()
        }
    }
}
