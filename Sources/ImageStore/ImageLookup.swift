import Foundation

/// The one name -> path resolver (FORMATS.md §3): the store verbs, `run -M`, `vm -i` and the
/// dissect verbs all find an image by name here, so they agree on which file a name means.
///
/// systemd's order (discover-image.c): the directories of the search path in turn, the first
/// that holds the name wins; within one directory `NAME` (a directory, btrfs subvolume, or
/// symlink to a block device) before `NAME.raw` (a disk image). Entries that are not images
/// (a `.#` temporary or lock, a regular file without `.raw`, a FIFO) are passed over.
public enum ImageLookup {
    /// What an IMAGE argument names.
    public enum Reference: Sendable, Equatable {
        /// A file, block device or directory given by its path.
        case path(String)
        /// An image of the store, found by name.
        case image(Image)
    }

    /// Where names are looked up: an explicit root alone (nothing is created there), else the
    /// system search path.
    public static func searchPath(root: String?) -> [ImageStore.SearchDirectory] {
        root.map { [ImageStore.SearchDirectory(path: ImageStore.normalize($0), vendor: false)] } ?? ImageStore.systemSearchPath
    }

    /// The image called `name`, first match on `searchPath`; throws `ImageName.Error` for a
    /// name no image can have and `ImageStore.Error.noSuchImage` when none has it.
    public static func find(_ name: String, in searchPath: [ImageStore.SearchDirectory], computeUsage: Bool = false) throws -> Image {
        let valid = try ImageName(validating: name).rawValue
        for directory in searchPath {
            if let image = Inspector.find(valid, in: directory.path, vendor: directory.vendor, computeUsage: computeUsage) {
                return image
            }
        }
        // Not found may mean not allowed to look: say so rather than "no image".
        for directory in searchPath { try Inspector.requireReadable(directory.path, entry: valid) }
        throw ImageStore.Error.noSuchImage(valid)
    }

    /// `find` on the search path of `root` (see `searchPath(root:)`).
    public static func find(_ name: String, root: String?) throws -> Image {
        try find(name, in: searchPath(root: root))
    }

    /// An IMAGE argument: a path when it holds a "/" or names an existing file (relative to the
    /// working directory, as `imagectl dissect foo.raw` means), else the name of a store image.
    public static func resolve(_ argument: String, root: String?) throws -> Reference {
        if isPath(argument) { return .path(argument) }
        return .image(try find(argument, root: root))
    }

    /// Whether an IMAGE argument is taken as a path rather than a name.
    public static func isPath(_ argument: String) -> Bool {
        argument.contains("/") || FileManager.default.fileExists(atPath: argument)
    }
}
