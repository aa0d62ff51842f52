import CShims
import Glibc
import SystemPackage

/// renameat2(2) with its flags. The image store never replaces an image by accident: every rename
/// into a final name uses `.noReplace`, and `--force` swaps atomically with `.exchange`.
public enum Rename {
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `RENAME_NOREPLACE`: fail with EEXIST when the target exists.
        public static let noReplace = Flags(rawValue: UInt32(RENAME_NOREPLACE))
        /// `RENAME_EXCHANGE`: atomically swap the two names (both must exist).
        public static let exchange = Flags(rawValue: UInt32(RENAME_EXCHANGE))
    }

    /// Renames `from` to `to` (paths, relative to the working directory when not absolute) with
    /// renameat2(2).
    public static func rename(_ from: String, to: String, flags: Flags = []) throws(SystemCallError) {
        try systemCall("renameat2", path: "\(from) -> \(to)") {
            img_renameat2(AT_FDCWD, from, AT_FDCWD, to, flags.rawValue)
        }
    }

    /// renameat2(2) relative to directory descriptors.
    public static func rename(at fromDirectory: FileDescriptor, _ from: String,
                              to toDirectory: FileDescriptor, _ to: String, flags: Flags = []) throws(SystemCallError) {
        try systemCall("renameat2", path: "\(from) -> \(to)") {
            img_renameat2(fromDirectory.rawValue, from, toDirectory.rawValue, to, flags.rawValue)
        }
    }
}
