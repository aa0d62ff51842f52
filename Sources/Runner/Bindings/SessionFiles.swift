import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// The few raw calls `RootSession` needs: mkdirat(2) relative to a held directory, waiting for
/// loop devices to detach.
enum SessionFiles {
    /// mkdirat(2) of `name` in the directory behind `parent`.
    static func makeDirectory(in parent: FileDescriptor, name: String, mode: mode_t, what: String) throws(RootSession.Error) {
        if mkdirat(parent.rawValue, name, mode) != 0 { throw .temporary(what, String(cString: strerror(errno))) }
    }
}

extension SessionFiles {
    /// Waits (up to 2 s) until none of the loop devices `numbers` is still backed by `image`: the
    /// kernel detaches an autoclear device when its last user lets go, which can trail the end of
    /// the container's namespace by a moment.
    static func waitForLoopDetach(_ numbers: [Int], image: String) {
        let imagePath = URL(fileURLWithPath: image).resolvingSymlinksInPath().path
        for _ in 0..<200 {
            let attached = numbers.filter { n in
                guard let file = LoopDevice.backingFile(number: n) else { return false }
                return file == image || file == imagePath
            }
            if attached.isEmpty { return }
            usleep(10_000)
        }
    }
}
