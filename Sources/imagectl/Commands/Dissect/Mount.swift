import ArgumentParser
import Dissect
import Foundation

/// `imagectl mount IMAGE DIR`: the image's mount plan applied at DIR.
struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a disk image's partitions at a directory (root, /usr, /home, /srv, /var, /var/tmp, /boot, /efi).",
        discussion: """
            One loop device per partition (offset and size limit, no udev); mounts nodev, ESP and \
            XBOOTLDR also nosuid,noexec. A verity-protected root/usr is opened with dm-verity \
            where device-mapper exists (the kernel checks every read); without it, it is verified \
            completely in userspace first and mounted read-only: from a private reflink copy of \
            the image where its file system can make one (btrfs, xfs), so later writes to the \
            image do not reach the mount; elsewhere the check is one-time. The output says which \
            path was taken. If any step fails, everything already mounted or attached is undone. \
            Undo with `imagectl umount DIR`.
            """)

    @Argument(help: "Image file, block device or pool image name.")
    var image: String

    @Argument(help: "Directory to mount the image's root at.")
    var directory: String

    @Flag(name: .customLong("read-only"), help: "Mount every partition read-only.")
    var readOnly = false

    @Flag(name: .customLong("mkdir"), help: "Create DIR and missing mount points inside the image.")
    var mkdir = false

    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    /// --json: where each partition was mounted.
    struct Mounted: Encodable {
        var image: String
        var directory: String
        var mountPoints: [String]
    }

    func run() async throws {
        let path = try ImageArgument.resolve(image, store: store)
        // The policy and verity options are checked inside dissect(), for a directory too (a
        // root hash for a tree is refused as such), before the "nothing to mount" answer.
        let dissected = try await verity.dissect(path)
        guard !ImageArgument.isDirectory(path) else {
            throw CommandFailure(message: "\(path) is a directory: nothing to mount (use it directly)")
        }
        guard ImageArgument.canMount else { throw CommandFailure(message: "mounting an image needs root and loop devices (/dev/loop-control)") }
        let plan = try MountPlan.make(dissected, readOnly: readOnly)
        let record = try await ImageMounter.mount(plan, at: directory, options: ImageMounter.Options(mkdir: mkdir, keyringDirectory: verity.verityKeyring) { line in
            // The verity path taken is a status message; a warning is printed even with -q.
            if !output.quiet || line.hasPrefix("warning") { Terminal.standardError("\(line)\n") }
        })
        if output.json {
            try output.printJSON(Mounted(image: path, directory: directory, mountPoints: record.mountPoints))
        } else {
            for point in record.mountPoints { output.status("mounted \(point)") }
        }
    }
}
