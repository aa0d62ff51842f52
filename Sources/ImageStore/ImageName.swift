/// The name of an image in the store, checked against the rules of FORMATS.md §3 (systemd's
/// `image_name_is_valid`): a valid file name, valid UTF-8 without control characters, not starting
/// with `.#` (the prefix of temporary and lock files). A leading `.` makes the image hidden.
/// Stricter than systemd in one way: a name cannot end in `.raw` or a side-file suffix, since the
/// store derives file names from image names by appending those (`NAME.raw`, `NAME.nspawn`), and
/// a tree named `x.raw` would otherwise be found, removed and replaced as image `x` (issue 16).
public struct ImageName: Hashable, Sendable, CustomStringConvertible, Codable {
    public let rawValue: String

    /// Longest accepted name in bytes. Leaves room in NAME_MAX (255) for the longest file the store
    /// derives from a name: `.#NAME.<16 hex>.tmp.roothash.p7s` and `NAME.imagectl.json`.
    public static let maximumLength = 200

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case empty
        case tooLong(String)
        case containsSlash(String)
        case dotOrDotDot(String)
        case controlCharacter(String)
        case temporaryPrefix(String)
        case reservedSuffix(String, suffix: String)

        public var description: String {
            switch self {
            case .empty: "image name is empty"
            case .tooLong(let name): "image name '\(name.prefix(40))...' is longer than \(ImageName.maximumLength) bytes"
            case .containsSlash(let name): "image name '\(name)' contains '/'"
            case .dotOrDotDot(let name): "image name '\(name)' is not a file name"
            case .controlCharacter: "image name contains a control character"
            case .temporaryPrefix(let name): "image name '\(name)' starts with '.#', which is reserved for temporary files"
            case .reservedSuffix(let name, let suffix):
                "image name '\(name)' ends in '\(suffix)', which the store appends to image names for \(suffix == ".raw" ? "disk image files" : "side files"); choose another name"
            }
        }
    }

    /// Checks `string` and keeps it; throws `ImageName.Error` saying what is wrong.
    public init(validating string: String) throws {
        // A Swift String from the command line may carry invalid UTF-8 repaired with U+FFFD;
        // treat the replacement character as invalid input rather than store a changed name.
        if string.isEmpty { throw Error.empty }
        if string.utf8.count > Self.maximumLength { throw Error.tooLong(string) }
        if string == "." || string == ".." { throw Error.dotOrDotDot(string) }
        if string.contains("/") { throw Error.containsSlash(string) }
        if string.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || (0x80...0x9f).contains($0.value) || $0 == "\u{FFFD}" }) {
            throw Error.controlCharacter(string)
        }
        if string.hasPrefix(".#") { throw Error.temporaryPrefix(string) }
        if let suffix = Self.reservedSuffixes.first(where: { string.hasSuffix($0) }) {
            throw Error.reservedSuffix(string, suffix: suffix)
        }
        rawValue = string
    }

    /// Suffixes a name cannot end in: the raw image file's and every side file's.
    public static let reservedSuffixes = [".raw"] + SideFiles.suffixes

    /// Whether the name is hidden (leading `.`): `list` shows it only with `--all`.
    public var isHidden: Bool { rawValue.hasPrefix(".") }

    public var description: String { rawValue }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        try self.init(validating: try container.decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
