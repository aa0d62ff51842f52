import Runner

enum SettingsFile {
    /// A .nspawn file beside an image: parsed, then applied to a configuration as an untrusted
    /// file (from /var/lib/machines) and as a trusted one (from /etc/systemd/nspawn).
    static func run(_ bytes: [UInt8]) {
        guard let settings = try? NspawnSettings.parse(bytes, path: "/var/lib/machines/fuzz.nspawn") else { return }
        for trusted in [false, true] {
            var configuration = ContainerConfiguration(directory: "/var/lib/machines/fuzz")
            _ = try? settings.apply(to: &configuration, mask: [], trusted: trusted, path: "/var/lib/machines/fuzz.nspawn")
        }
    }
}
