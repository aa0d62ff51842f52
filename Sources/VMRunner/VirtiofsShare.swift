import Foundation

extension VMSpec {
    /// A host directory shared with the guest by a virtiofsd of its own, through a
    /// vhost-user-fs-pci device (the virtiofs tag `tag`): the root file system of `vm -D`, or a
    /// --bind/--bind-ro mounted by the guest at `guestPath`.
    public struct Share: Sendable, Equatable {
        /// The virtiofs tag the guest mounts ("root" for the root file system, as vmspawn).
        public var tag: String
        /// virtiofsd's vhost-user socket, which qemu connects to.
        public var socketPath: String
        /// The host directory (what virtiofsd serves, or the lower layer of its -x overlay).
        public var source: String
        public var readOnly: Bool
        /// Where the guest mounts it; nil for the root file system.
        public var guestPath: String?
        /// Mount options for the guest (systemd.mount-extra='s fourth field), "ro" included
        /// for a read-only share.
        public var guestOptions: [String]
        public init(tag: String, socketPath: String, source: String, readOnly: Bool, guestPath: String?, guestOptions: [String] = []) {
            self.tag = tag
            self.socketPath = socketPath
            self.source = source
            self.readOnly = readOnly
            self.guestPath = guestPath
            self.guestOptions = guestOptions
        }
    }

    /// --bind=SRC[:DST[:OPTS]] / --bind-ro=: what the user asked to share.
    public struct BindRequest: Sendable, Equatable {
        public var source: String
        public var target: String
        public var options: [String]
        public var readOnly: Bool
        public init(source: String, target: String, options: [String], readOnly: Bool) {
            self.source = source
            self.target = target
            self.options = options
            self.readOnly = readOnly
        }
    }
}

/// Parsing and command-line words of virtiofs shares: pure functions.
public enum VirtiofsShares {
    /// The tag of the root file system, as systemd-vmspawn names it (root=root on the command line).
    public static let rootTag = "root"

    /// SRC[:DST[:OPTS]]: SRC an absolute host directory, DST an absolute guest path (default: SRC),
    /// OPTS comma-separated mount options for the guest. No whitespace (the path travels as one
    /// kernel command line word) and no further colon (systemd.mount-extra= separates by colons).
    public static func parseBind(_ text: String, readOnly: Bool) throws(VMError) -> VMSpec.BindRequest {
        let option = readOnly ? "--bind-ro" : "--bind"
        func bad(_ why: String) -> VMError { .invalidValue(option: option, value: text, expected: why) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count) else { throw bad("SRC[:DST[:OPTIONS]] with no other colon") }
        let source = parts[0]
        let target = parts.count > 1 && !parts[1].isEmpty ? parts[1] : source
        guard source.hasPrefix("/"), target.hasPrefix("/") else { throw bad("absolute paths, SRC[:DST[:OPTIONS]]") }
        guard !text.contains(where: { $0.isWhitespace || $0 == "\"" || $0 == "\\" }) else {
            throw bad("no white space, quote or backslash (the guest path is a kernel command line word)")
        }
        guard target != "/" else { throw bad("a guest path other than / (the root is -D's)") }
        var options = parts.count > 2 ? parts[2].split(separator: ",").map(String.init) : []
        if readOnly, !options.contains("ro") { options.insert("ro", at: 0) }
        return VMSpec.BindRequest(source: source, target: normalized(target), options: options, readOnly: readOnly)
    }

    static func normalized(_ path: String) -> String {
        let components = path.split(separator: "/").filter { $0 != "." }
        return "/" + components.joined(separator: "/")
    }

    /// The tag of the Nth bind (0-based).
    public static func bindTag(_ index: Int) -> String { "bind\(index)" }

    /// Kernel command line words for the shares: the root's (root=root rootfstype=virtiofs as
    /// vmspawn passes them, boot=virtiofs for the initramfs-tools script of `InitrdAppendix`,
    /// ro for a read-only root) and one systemd.mount-extra=TAG:DST:virtiofs[:OPTS] per bind
    /// (read by systemd >= 254 in the guest, and by the appended initrd script for older ones).
    public static func kernelWords(_ shares: [VMSpec.Share]) -> [String] {
        var words: [String] = []
        for share in shares {
            if share.guestPath == nil {
                words += ["root=" + share.tag, "rootfstype=virtiofs", "boot=virtiofs"]
                if share.readOnly { words.append("ro") }
            }
        }
        for share in shares {
            guard let path = share.guestPath else { continue }
            var word = "systemd.mount-extra=\(share.tag):\(path):virtiofs"
            if !share.guestOptions.isEmpty { word += ":" + share.guestOptions.joined(separator: ",") }
            words.append(word)
        }
        return words
    }
}

extension QEMUCommand {
    /// The vhost-user-fs devices of the shares, and the shared guest memory that vhost-user
    /// needs (virtiofsd maps the guest's RAM): a memfd backend with share=on as the guest's one
    /// NUMA node, as systemd-vmspawn sets it. Nothing without shares.
    public static func virtiofsArguments(for spec: VMSpec) -> [String] {
        guard !spec.shares.isEmpty else { return [] }
        var args = ["-object", "memory-backend-memfd,id=mem,size=\(memoryArgument(spec.memoryBytes)),share=on",
                    "-numa", "node,memdev=mem"]
        for share in spec.shares {
            let id = "vfs-" + share.tag
            args += ["-chardev", "socket,id=\(id),path=" + escapeOptionValue(share.socketPath),
                     "-device", "vhost-user-fs-pci,queue-size=1024,chardev=\(id),tag=\(share.tag)"]
        }
        return args
    }
}
