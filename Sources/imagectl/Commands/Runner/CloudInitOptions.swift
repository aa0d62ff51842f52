import ArgumentParser
import Foundation
import LinuxSystem
import Machines
import Runner
import VMRunner

/// cloud-init's NoCloud data for `imagectl vm` and `imagectl run` (CloudInitData in Machines).
struct CloudInitOptions: ParsableArguments {
    @Option(name: .customLong("cloud-init"), help: ArgumentHelp("cloud-init NoCloud data from a directory holding user-data and optionally meta-data and network-config; \"defaults\" for none but the defaults: meta-data with instance-id = the machine UUID and local-hostname = the machine name, and (without user-data) a #cloud-config putting the --pass-ssh-key/--ssh-key key on the image's default user.", valueName: "dir"))
    var directory: String?

    @Option(name: .customLong("cloud-init-user-data"), help: ArgumentHelp("cloud-init user-data (a #cloud-config or a #! script, at most 1 MiB), with the default meta-data.", valueName: "file"))
    var userData: String?

    @Option(name: .customLong("ssh-key"), help: ArgumentHelp("An ssh public key (such as ~/.ssh/id_ed25519.pub) for the image's default user through cloud-init's default user-data.", valueName: "file"))
    var sshKey: String?

    var requested: Bool { directory != nil || userData != nil }

    /// The one-line public key of --ssh-key, nil without it.
    func publicKey() throws -> String? {
        guard let sshKey else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try readRegularFile(sshKey, upTo: 64 << 10)
        } catch {
            throw CommandFailure(message: "--ssh-key: \(sshKey): \(error.errno == .noSuchFileOrDirectory ? "no such file" : "\(error)")")
        }
        guard let text = String(validating: bytes, as: UTF8.self)?.trimmingCharacters(in: .whitespacesAndNewlines),
              text.hasPrefix("ssh-") || text.hasPrefix("ecdsa-") || text.hasPrefix("sk-"), !text.contains("\n") else {
            throw CommandFailure(message: "--ssh-key: \(sshKey) is not an ssh public key (one line such as \"ssh-ed25519 AAAA... user@host\")")
        }
        return text
    }

    /// The seed's files for a machine, nil when no cloud-init option was given.
    func load(instanceID: UUID, hostname: String, sshPublicKey: String?) throws -> CloudInitData? {
        if sshKey != nil && !requested {
            throw ValidationError("--ssh-key needs --cloud-init= or --cloud-init-user-data=")
        }
        return try CloudInitData.load(directory: directory, userDataFile: userData, instanceID: instanceID,
                                      hostname: hostname, sshPublicKey: sshPublicKey)
    }
}

extension CloudInitOptions {
    /// The container's mount point for the seed. Not NoCloud's own seed directory
    /// (/var/lib/cloud/seed/nocloud): a bind there would make the missing /var/lib/cloud as the
    /// host's root, which the container's root (in its user namespace) then cannot write to, and
    /// cloud-init fails. Under /run (a tmpfs of the container's) nothing of the tree is touched.
    static let containerSeedPath = "/run/host/cloud-init"

    /// What tells cloud-init where the seed is: in a container cloud-init reads PID 1's command
    /// line (/proc/1/cmdline) as the kernel's, so the booted systemd gets this argument.
    static let containerSeedArgument = "ds=nocloud;s=file://\(containerSeedPath)/"

    /// For `run`: checks the data now (bad input starts nothing), makes the host directory the
    /// seed goes to ($IMAGECTL_RUNTIME_DIR/cloud-init/PID.d), binds it read-only at
    /// /run/host/cloud-init and, with --boot, passes `ds=nocloud;s=file:///run/host/cloud-init/`
    /// to the container's init; nil without cloud-init options. The tree itself is not written.
    /// The files are written by `writeContainerSeed` once the machine's name and UUID are known.
    /// Without -x and --uuid= the machine UUID is derived from the tree's path, so that
    /// cloud-init's instance-id stays the same from run to run.
    func prepareContainerSeed(_ c: inout ContainerConfiguration) throws -> String? {
        guard requested || sshKey != nil else { return nil }
        _ = try load(instanceID: UUID(), hostname: "check", sshPublicKey: try publicKey())
        if c.uuid == nil && !c.ephemeral {
            let source = !c.directory.isEmpty ? c.directory : c.mounts.image ?? c.mounts.storeImage ?? ""
            c.uuid = CloudInitData.stableUUID(for: URL(fileURLWithPath: source).standardizedFileURL.path)
        }
        let directory = CloudInitSeed.containerDirectory()
        do {
            try FileSystem.makeDirectories(directory, mode: 0o755)
        } catch {
            throw CommandFailure(message: "--cloud-init: cannot create \(directory): \(error)")
        }
        c.mounts.extra.append(.bind(source: MountPath(path: directory, inRoot: false), target: Self.containerSeedPath,
                                    readOnly: true, recursive: false))
        if c.boot { c.command.append(Self.containerSeedArgument) }
        return directory
    }

    func writeContainerSeed(_ directory: String, uuid: UUID, hostname: String) throws {
        guard let data = try load(instanceID: uuid, hostname: hostname, sshPublicKey: try publicKey()) else { return }
        try data.write(to: directory)
    }
}
