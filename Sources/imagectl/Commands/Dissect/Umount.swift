import ArgumentParser
import Dissect
import Foundation

/// `imagectl umount DIR`: undoes `imagectl mount`.
struct UmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount an image mounted with `imagectl mount` and detach its loop devices.",
        discussion: "Unmounts everything at and below DIR, deepest first, then detaches the loop devices that were attached for it.")

    @Argument(help: "The directory given to `imagectl mount`.")
    var directory: String

    @Flag(name: .customLong("rmdir"), help: "Remove DIR afterwards.")
    var rmdir = false

    func run() throws {
        try ImageMounter.unmount(directory, removeDirectory: rmdir)
    }
}
