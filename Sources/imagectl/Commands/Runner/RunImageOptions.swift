import ArgumentParser
import Foundation
import Runner

/// `imagectl run`'s root sources and extra mounts: -i, -M as a source, verity and policy,
/// --bind, --bind-ro, --tmpfs, --overlay, --overlay-ro (systemd-nspawn's names and syntax).
struct RunImageOptions: ParsableArguments {
    @Option(name: [.customShort("i"), .customLong("image")], help: ArgumentHelp("Disk image (file or block device) to run: dissected and mounted as `imagectl mount` does (one loop device per partition; a verity-protected partition verified and read-only).", valueName: "image"))
    var image: String?

    @OptionGroup var verity: VerityOptions
    @OptionGroup var store: StoreOptions

    @Option(name: .customLong("bind"), help: ArgumentHelp("Bind-mount a host file or directory: SRC[:DST[:OPTIONS]], OPTIONS rbind (default) or norbind, and idmap (with --private-users=: the directory's IDs 0-65535 are the container's; otherwise they show as nobody) or noidmap; \"+SRC\" is inside the container, an empty SRC a temporary directory removed afterwards; \"\\:\" escapes a colon (repeatable).", valueName: "src[:dst[:opts]]"))
    var bind: [String] = []

    @Option(name: .customLong("bind-ro"), help: ArgumentHelp("Like --bind, read-only (recursively for rbind).", valueName: "src[:dst[:opts]]"))
    var bindReadOnly: [String] = []

    @Option(name: .customLong("tmpfs"), help: ArgumentHelp("Mount a tmpfs at PATH inside the container (nodev, mode 0755 unless OPTS say otherwise) (repeatable).", valueName: "path[:opts]"))
    var tmpfs: [String] = []

    @Option(name: .customLong("overlay"), help: ArgumentHelp("Overlay file system: LOWER...:UPPER:DST, or LOWER:UPPER mounted at UPPER; \"+\" paths are inside the container; an empty UPPER is a temporary directory removed afterwards (repeatable).", valueName: "lower:upper:dst"))
    var overlay: [String] = []

    @Option(name: .customLong("overlay-ro"), help: ArgumentHelp("Read-only overlay file system: LOWER...:DST (repeatable).", valueName: "lower:dst"))
    var overlayReadOnly: [String] = []

    @Option(name: .customLong("volatile"), help: ArgumentHelp("yes: a tmpfs root with the tree's /usr read-only; state: the tree read-only with a tmpfs on /var; overlay: a throw-away overlay over the tree; no (default).", valueName: "mode"))
    var volatile: String?

    /// Fills `c.mounts`. -D, -i and -M-as-source exclude each other as in nspawn: with -D or -i,
    /// -M only names the machine; alone it names a store image to run.
    func apply(to c: inout ContainerConfiguration, directory: String?, template: String?) throws {
        if directory != nil && image != nil { throw ValidationError("--directory and --image cannot be combined") }
        var m = MountSettings()
        m.image = image
        if let image, c.machineName == nil { c.machineName = try MountSettings.machineName(forImage: image) }
        if directory == nil && image == nil {
            guard let name = c.machineName else { throw ValidationError("no root given: use -D DIRECTORY, -i IMAGE or -M NAME (an image in the store)") }
            m.storeImage = name
            m.storeRoot = store.explicitRoot
        }
        if template != nil && directory == nil { throw ValidationError("--template needs --directory") }
        // Whether the verity options and the policy fit the root (a directory tree or a disk
        // image) is decided by ImageAdmission when the root is opened, for -D, -i and -M alike.
        m.verity = verity.explicit
        m.imagePolicy = verity.imagePolicy
        m.verityKeyring = verity.verityKeyring
        do {
            for text in bind { m.extra.append(try ExtraMount.parseBind(text, readOnly: false)) }
            for text in bindReadOnly { m.extra.append(try ExtraMount.parseBind(text, readOnly: true)) }
            for text in tmpfs { m.extra.append(try ExtraMount.parseTmpfs(text)) }
            for text in overlay { m.extra.append(try ExtraMount.parseOverlay(text, readOnly: false)) }
            for text in overlayReadOnly { m.extra.append(try ExtraMount.parseOverlay(text, readOnly: true)) }
        } catch {
            throw ValidationError(error.description)
        }
        if let volatile {
            do { m.volatile = try VolatileMode.parse(volatile) } catch { throw ValidationError(error.description) }
        }
        if m.volatile != .no && c.ephemeral { throw ValidationError("--volatile and --ephemeral cannot be combined") }
        c.mounts = m
    }

    /// Mounts the image or locks the store image and makes the temporary directories; status
    /// lines (which verity path was taken) go to stderr unless `quiet`.
    func openRoot(_ configuration: ContainerConfiguration, quiet: Bool) async throws -> RootSession {
        try await RootSession.open(configuration) { line in
            // Warnings (an untrusted signature) are said even with -q.
            if !quiet || line.hasPrefix("warning: ") { Terminal.standardError("\(line)\n") }
        }
    }
}
