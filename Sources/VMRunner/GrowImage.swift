import Dissect
import Foundation
import LinuxSystem
import SystemPackage

/// `--grow-image=SIZE` of `imagectl vm` (systemd-vmspawn's option) and `imagectl resize`: a raw
/// disk image made larger before it boots, sparse (ftruncate: the new space takes no blocks),
/// with its GPT's backup header and partition array moved to the new end (`GPTRelocation`), so
/// that the guest's growpart or systemd-repart can grow the root file system at once.
///
/// With `-x` the image is left alone: the throw-away qcow2 overlay is made with the larger
/// virtual size and the GPT writes go into the overlay (through qemu-io). A qcow2 image itself
/// is refused: imagectl does not read qcow2 partitions, so it could not move the GPT (grow it
/// with `qemu-img resize` and let the guest repair the table, or import it: imports are raw).
/// Images are never shrunk: a size below the image's is an error.
public enum GrowImage {
    /// SIZE as vmspawn takes it: bytes with an optional K, M, G or T suffix (powers of 1024);
    /// "+SIZE" is relative to the image's current size.
    public enum Size: Sendable, Equatable {
        case absolute(UInt64)
        case relative(UInt64)

        /// The new size for an image of `current` bytes.
        public func bytes(from current: UInt64) -> UInt64 {
            switch self {
            case .absolute(let size): size
            case .relative(let more): current.addingReportingOverflow(more).overflow ? UInt64.max : current + more
            }
        }
    }

    public static func parse(_ text: String, option: String = "--grow-image") throws(VMError) -> Size {
        if text.hasPrefix("+") { return .relative(try VMOptions.parseSize(String(text.dropFirst()), option: option)) }
        return .absolute(try VMOptions.parseSize(text, option: option))
    }

    /// The status line for a growth (none when the size stayed).
    public static func describe(_ result: Result, path: String) -> [String] {
        guard result.newSize > result.oldSize else { return [] }
        return ["Grew \(path) from \(result.oldSize) to \(result.newSize) bytes\(result.movedGPT ? ", GPT backup moved to the new end" : "")."]
    }

    /// What growing did.
    public struct Result: Sendable, Equatable {
        public var oldSize: UInt64
        public var newSize: UInt64
        /// True when a GPT was found and moved to the new end.
        public var movedGPT: Bool
    }

    /// The new size and the GPT writes for the raw image `path` grown as `size` asks; checks
    /// everything before anything is written.
    static func plan(_ path: String, size: Size, option: String, value: String) throws(VMError) -> (Result, [GPTRelocation.Write]?) {
        let image: ImageFile
        do {
            image = try ImageFile(path: path)
        } catch {
            throw .imageNotUsable(path: path, reason: "\(error)")
        }
        guard !image.isBlockDevice else { throw .imageNotUsable(path: path, reason: "is a block device; \(option) grows image files only") }
        if VMOptions.detectFormat(path: path) == .qcow2 {
            throw .imageNotUsable(path: path, reason: "is qcow2; \(option) grows raw images only (imagectl cannot move a qcow2 image's GPT: use qemu-img resize, or import it, which makes it raw)")
        }
        let current = image.size
        let target = size.bytes(from: current)
        guard target >= current else {
            throw .invalidValue(option: option, value: value, expected: "at least the image's current size, \(current) bytes: images are not shrunk")
        }
        do {
            let writes = try GPTRelocation.plan(image, newSize: target)
            return (Result(oldSize: current, newSize: target, movedGPT: !(writes ?? []).isEmpty), writes)
        } catch {
            throw .imageNotUsable(path: path, reason: "cannot be grown to \(target) bytes: \(error)")
        }
    }

    /// Grows the raw image file `path` in place (the caller holds its lock).
    public static func grow(_ path: String, to size: Size, option: String = "--grow-image", value: String) throws(VMError) -> Result {
        let (result, writes) = try plan(path, size: size, option: option, value: value)
        guard result.newSize > result.oldSize || !(writes ?? []).isEmpty else { return result }
        do {
            let (descriptor, _) = try UserFile.open(path, accepting: .regular, access: .readWrite)
            defer { try? descriptor.close() }
            try descriptor.resize(to: Int64(result.newSize))
            for write in writes ?? [] {
                _ = try descriptor.writeAll(toAbsoluteOffset: Int64(write.offset), write.bytes)
            }
            // The GPT writes reach the disk before qemu (or another tool) reads the image.
            try FileSystem.synchronize(descriptor, path: path)
        } catch {
            throw .setupFailed("\(option): cannot grow \(path): \(error)")
        }
        return result
    }

    /// For -x: makes `overlay` (qcow2 over the raw `base`) with the grown virtual size and writes
    /// the moved GPT into it; `base` is not written. `scratch` is a directory for the bytes
    /// handed to qemu-io.
    static func growOverlay(base: String, overlay: String, scratch: String, to size: Size, value: String) throws(VMError) -> Result {
        let (result, writes) = try plan(base, size: size, option: "--grow-image", value: value)
        try VirtualMachine.runTool("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay, String(result.newSize)])
        var commands: [String] = []
        for (index, write) in (writes ?? []).enumerated() {
            let file = scratch + "/gpt-write-\(index)"
            guard FileManager.default.createFile(atPath: file, contents: Data(write.bytes), attributes: [.posixPermissions: 0o600]) else {
                throw .setupFailed("--grow-image: cannot write \(file)")
            }
            commands += ["-c", "write -q -s \(file) \(write.offset) \(write.bytes.count)"]
        }
        if !commands.isEmpty {
            // qemu-io opens the overlay as qemu will (qcow2 over the raw base) and writes the
            // bytes through it: the base image is only read.
            try VirtualMachine.runTool("qemu-io", ["-f", "qcow2"] + commands + [overlay])
        }
        for index in (writes ?? []).indices { unlink(scratch + "/gpt-write-\(index)") }
        return result
    }
}
