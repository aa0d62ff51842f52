import Foundation

/// Test images built by fixtures/build.sh into $IMAGECTL_FIXTURES (default
/// /var/cache/imagectl-fixtures), and the small hostile samples committed under fixtures/hostile.
public enum Fixtures {
    public static var directory: String {
        ProcessInfo.processInfo.environment["IMAGECTL_FIXTURES"] ?? "/var/cache/imagectl-fixtures"
    }

    /// The path of a built fixture, or nil when it has not been built.
    public static func path(_ name: String) -> String? {
        let candidate = "\(directory)/\(name)"
        return FileManager.default.fileExists(atPath: candidate) ? candidate : nil
    }

    /// The repository's fixtures/ directory (found from this source file's location).
    public static func repositoryPath(_ relative: String, filePath: String = #filePath) -> String {
        let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent("fixtures").appendingPathComponent(relative).path
    }
}
