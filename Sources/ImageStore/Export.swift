import Foundation
import LinuxSystem
import SystemPackage

extension ImageStore {
    /// Writes directory or subvolume image `name` as a pax tarball to `file` ("-" for standard
    /// output), compressed per `compression` (default: from the file suffix). The file is written
    /// under a `.#` name beside it and renamed into place when complete; an existing file is not
    /// replaced.
    public func exportTar(_ name: String, to file: String, compression: ExportCompression? = nil) async throws {
        let (image, lock) = try self.lock(named: name, kind: .shared)
        defer { lock.release() }
        guard image.type == .directory || image.type == .subvolume else {
            throw Error.unsupported("export-tar needs a directory or subvolume image; '\(image.name)' is \(image.type.rawValue) (use export-raw)")
        }
        let chosen = compression ?? ExportCompression.fromSuffix(file)
        let path = image.targetPath
        try await Blocking.run {
            try Self.writeOutput(file) { fd in
                let exporter = try ArchiveExporter(fd: fd.rawValue, format: "pax", compression: chosen)
                try exporter.writeTree(path)
                try exporter.finish()
            }
        }
    }

    /// Writes raw or block image `name` to `file` ("-" for standard output): compressed per
    /// `compression` (default: from the suffix) through libarchive, or, uncompressed, as a sparse
    /// copy (reflinked where the filesystem allows).
    public func exportRaw(_ name: String, to file: String, compression: ExportCompression? = nil) async throws {
        let (image, lock) = try self.lock(named: name, kind: .shared)
        defer { lock.release() }
        guard image.type == .raw || image.type == .block else {
            throw Error.unsupported("export-raw needs a raw or block image; '\(image.name)' is \(image.type.rawValue) (use export-tar)")
        }
        let chosen = compression ?? ExportCompression.fromSuffix(file)
        let size = image.type == .block ? try FileSystem.blockDeviceSize(image.path) : try FileStatus.stat(image.path).size
        let source = image
        try await Blocking.run {
            let input = try FileDescriptor.open(source.targetPath, .readOnly, options: [.closeOnExec])
            defer { try? input.close() }
            try Self.writeOutput(file) { fd in
                if chosen == .uncompressed {
                    try FileCopy.copyData(from: input.rawValue, to: fd.rawValue, size: file == "-" || source.type == .block ? size : nil,
                                          reflink: file != "-", path: file)
                } else {
                    let exporter = try ArchiveExporter(fd: fd.rawValue, format: "raw", compression: chosen)
                    try exporter.writeRaw(from: input, size: size, name: source.name + ".raw")
                    try exporter.finish()
                }
            }
        }
    }

    /// Runs `body` on the output: standard output for "-", else a `.#` temporary beside `file`
    /// (mode 0644) that is fsynced and renamed into place without replacing anything, and removed
    /// when `body` fails.
    private static func writeOutput(_ file: String, _ body: (FileDescriptor) throws -> Void) throws {
        if file == "-" {
            try body(FileDescriptor.standardOutput)
            return
        }
        if FileSystem.exists(file) { throw Error.unsupported("'\(file)' already exists") }
        let directory = FileSystem.parentDirectory(file)
        let temporary = "\(directory)/.#\(FileSystem.baseName(file)).\(FileSystem.randomHex(8))"
        let fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        do {
            try body(fd)
            try FileSystem.synchronize(temporary)
            try fd.close()
            try Mutations.renameNoReplace(temporary, to: file, name: file)
        } catch {
            try? fd.close()
            try? FileSystem.removeFileIfPresent(temporary)
            if case Error.exists = error { throw Error.unsupported("'\(file)' already exists") }
            throw error
        }
    }
}
