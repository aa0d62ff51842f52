import Foundation
import LinuxSystem
import SystemPackage

/// The image a userspace verity check reads, and the mount then shows, when there is no
/// device-mapper to check every read.
///
/// A check of the image file itself is good for the moment it ran: the loop device reads the
/// file, so a later write to it shows through the "verified" mount. A private reflink of the
/// file (btrfs, xfs, bcachefs) closes that window at no cost in space or time: it shares the
/// image's extents, so the check reads the same bytes, and a later write to the image lands in
/// new extents of the image alone. The clone has no name (O_TMPFILE beside the image), so only
/// the loop devices attached to it keep it, and nothing is left behind on any exit.
enum PrivateImageCopy {
    enum Outcome {
        /// The clone, read-write, owned by the caller.
        case copy(FileDescriptor)
        /// Why there is none: the one-time check is what remains.
        case unavailable(String)
    }

    static func make(of imagePath: String) -> Outcome {
        let image: FileDescriptor
        let status: FileStatus
        do {
            (image, status) = try UserFile.open(imagePath, accepting: .image)
        } catch {
            return .unavailable("cannot open it: \(error)")
        }
        defer { try? image.close() }
        guard status.kind == .regular else { return .unavailable("\(imagePath) is a block device, which cannot be reflinked") }
        // Beside the file itself, not beside a symbolic link to it: FICLONE stays on one mount.
        let directory: String
        do {
            directory = FileSystem.parentDirectory(try FileSystem.canonicalPath(imagePath))
        } catch {
            return .unavailable("cannot resolve it: \(error)")
        }
        do {
            guard let clone = try Reflink.privateClone(of: image.rawValue, in: directory) else {
                return .unavailable("the file system of \(directory) cannot reflink")
            }
            return .copy(clone)
        } catch {
            return .unavailable("cannot make a reflink copy in \(directory): \(error)")
        }
    }
}
