import CArchive
import Foundation
import LinuxSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// What makes a stock Debian 12 tree boot with its root on virtiofs (`vm -D`).
///
/// Debian 12's kernel has virtiofs as a module (CONFIG_VIRTIO_FS=m) and its initramfs-tools
/// initrd contains neither that module nor a way to mount a virtiofs root: booted with
/// root=root rootfstype=virtiofs it looks for a block device "root" and drops to a shell. The
/// kernel unpacks several cpio archives concatenated into one initrd, later files added to
/// (or replacing) earlier ones, so imagectl appends one small uncompressed cpio archive to the
/// tree's own initrd (newc, written with libarchive) holding
/// - the tree's own fuse/virtiofs modules and whatever modules.dep says they need, from the
///   tree's /usr/lib/modules/VERSION (the modules of the kernel being booted), loaded with
///   insmod in dependency order unless the initrd's modprobe finds them;
/// - an initramfs-tools boot script, scripts/virtiofs, which `boot=virtiofs` on the kernel
///   command line selects instead of scripts/local: it mounts the tag named by root= at
///   ${rootmnt} (read-only with `ro`), then each systemd.mount-extra=TAG:DST:virtiofs[:OPTS]
///   below it (--bind: systemd reads those only from version 254 on and Debian 12 has 252).
/// This works for any stock tree without changing it (the alternative, a dracut initrd with
/// its virtiofs module built inside the tree, would need dracut installed there and a rebuild
/// per kernel). A systemd-based or dracut initrd ignores boot= and the extra files and mounts
/// root=root rootfstype=virtiofs itself, as it does under systemd-vmspawn.
public enum InitrdAppendix {
    public struct Module: Sendable, Equatable {
        /// The module's name as /sys/module shows it (dashes as underscores).
        public var name: String
        /// Path inside the tree.
        public var path: String
    }

    /// The modules virtiofs needs from the tree's /usr/lib/modules/VERSION, in load order
    /// (dependencies first); empty when virtiofs is built into the kernel (modules.builtin).
    public static func modules(in root: FileDescriptor, version: String) throws(VMError) -> [Module] {
        let bases = ["/usr/lib/modules/\(version)", "/lib/modules/\(version)"]
        guard let base = bases.first(where: { OpenBeneath.fileType($0, in: root) == S_IFDIR }) else {
            throw .imageNotUsable(path: "/usr/lib/modules/\(version)", reason: "is not in the tree: the modules of kernel \(version) are needed for its root on virtiofs")
        }
        let builtin = (try? OpenBeneath.readFile(base + "/modules.builtin", in: root, limit: 16 << 20)).flatMap { $0 }
        if let builtin, String(decoding: builtin, as: UTF8.self).split(separator: "\n").contains(where: { $0.hasSuffix("/virtiofs.ko") }) {
            return []
        }
        guard let depData = (try? OpenBeneath.readFile(base + "/modules.dep", in: root, limit: 64 << 20)).flatMap({ $0 }) else {
            throw .imageNotUsable(path: base + "/modules.dep", reason: "is missing in the tree (run depmod there): the virtiofs module cannot be found")
        }
        guard let order = loadOrder(modulesDep: String(decoding: depData, as: UTF8.self), module: "virtiofs") else {
            throw .imageNotUsable(path: base, reason: "has no virtiofs module (neither in modules.dep nor in modules.builtin): kernel \(version) cannot mount a virtiofs root")
        }
        return order.map { Module(name: moduleName($0), path: $0.hasPrefix("/") ? $0 : base + "/" + $0) }
    }

    /// From modules.dep text ("kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko ..."): the
    /// module's dependencies in load order, then the module. depmod lists a module's
    /// dependencies so that the last one needs none of the others (modprobe loads them from
    /// the end).
    public static func loadOrder(modulesDep: String, module: String) -> [String]? {
        for line in modulesDep.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            guard moduleName(path) == module else { continue }
            let dependencies = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            return dependencies.reversed() + [path]
        }
        return nil
    }

    /// "kernel/fs/fuse/virtio-fs.ko.xz" -> "virtio_fs".
    public static func moduleName(_ path: String) -> String {
        var name = String(path.split(separator: "/").last ?? "")
        if let range = name.range(of: ".ko") { name = String(name[..<range.lowerBound]) }
        return name.replacingOccurrences(of: "-", with: "_")
    }

    /// Where a module lies in the appended archive.
    static func archivePath(_ module: Module) -> String {
        "imagectl-virtiofs/" + (module.path.split(separator: "/").last.map(String.init) ?? module.name)
    }

    /// The initramfs-tools boot script (sourced by its /init, which calls mount_top,
    /// mount_premount, mountroot and mount_bottom, and provides panic and ${rootmnt}).
    public static func bootScript(modules: [Module]) -> String {
        var loads = ""
        for module in modules {
            loads += "\t[ -d /sys/module/\(module.name) ] || modprobe -q \(module.name) || insmod /\(archivePath(module)) ||\n"
            loads += "\t\tpanic \"imagectl: cannot load the \(module.name) module\"\n"
        }
        return """
            # initramfs-tools boot script written by imagectl vm -D (boot=virtiofs): the root file
            # system is the virtiofs tag named by root=, from the tree's own virtiofs module; then
            # the shares named by systemd.mount-extra=TAG:DST:virtiofs[:OPTIONS] below it (systemd
            # reads those only from version 254 on).

            virtiofs_modules()
            {
            \tmodprobe -q virtio_pci
            \(loads)}

            virtiofs_mount_extra()
            {
            \tfor x in $(cat /proc/cmdline); do
            \t\tcase "$x" in
            \t\tsystemd.mount-extra=*:*:virtiofs|systemd.mount-extra=*:*:virtiofs:*) ;;
            \t\t*) continue ;;
            \t\tesac
            \t\tvalue="${x#systemd.mount-extra=}"
            \t\ttag="${value%%:*}"
            \t\trest="${value#*:}"
            \t\tdst="${rest%%:*}"
            \t\trest="${rest#*:}"
            \t\topts=
            \t\tcase "$rest" in *:*) opts="${rest#*:}" ;; esac
            \t\t[ -d "${rootmnt?}${dst}" ] || mkdir -p "${rootmnt}${dst}"
            \t\tif [ -n "$opts" ]; then
            \t\t\tmount -t virtiofs -o "$opts" "$tag" "${rootmnt}${dst}" || echo "imagectl: cannot mount the virtiofs tag $tag at $dst" >&2
            \t\telse
            \t\t\tmount -t virtiofs "$tag" "${rootmnt}${dst}" || echo "imagectl: cannot mount the virtiofs tag $tag at $dst" >&2
            \t\tfi
            \tdone
            }

            mountroot()
            {
            \tvirtiofs_modules
            \troflag=-w
            \t[ "${readonly?}" = y ] && roflag=-r
            \t# The device is probed when virtiofs loads; a slow udev may still be adding it.
            \ttries=0
            \twhile ! mount -t virtiofs ${roflag} "${ROOT?}" "${rootmnt?}"; do
            \t\ttries=$((tries + 1))
            \t\t[ "$tries" -lt 50 ] || panic "imagectl: cannot mount the virtiofs tag ${ROOT} as the root file system"
            \t\tsleep 0.2 2>/dev/null || sleep 1
            \tdone
            \tvirtiofs_mount_extra
            }

            mount_top()
            {
            \t:
            }

            mount_premount()
            {
            \t:
            }

            mount_bottom()
            {
            \t:
            }

            """
    }

    /// Writes `base` (an initrd: the tree's, or the concatenated --initrd= files), zeros up to a
    /// 4-byte boundary (the kernel looks for the next archive's header there) and the appended
    /// archive, with `modules` read inside the tree `root`, into `output`.
    public static func write(base: FileDescriptor?, root: FileDescriptor, modules: [Module], to output: String) throws(VMError) {
        let out = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw .setupFailed("cannot create \(output): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        var written: UInt64 = 0
        func put(_ bytes: [UInt8], count: Int) throws(VMError) {
            var offset = 0
            while offset < count {
                let n = bytes.withUnsafeBytes { Glibc.write(out, $0.baseAddress! + offset, count - offset) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw .setupFailed("writing \(output): \(String(cString: strerror(errno)))") }
                offset += n
            }
            written += UInt64(count)
        }
        if let base {
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(base.rawValue, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw .setupFailed("reading the initrd: \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                try put(chunk, count: n)
            }
            let padding = [UInt8](repeating: 0, count: Int((4 - written % 4) % 4))
            try put(padding, count: padding.count)
        }
        var files: [(String, [UInt8], mode_t)] = [("scripts/virtiofs", Array(bootScript(modules: modules).utf8), 0o644)]
        for module in modules {
            let bytes: [UInt8]?
            do { bytes = try OpenBeneath.readFile(module.path, in: root, limit: 256 << 20) } catch {
                throw .setupFailed("cannot read the module \(module.path) in the tree: \(error)")
            }
            guard let bytes else { throw .imageNotUsable(path: module.path, reason: "is listed in modules.dep but is not a file in the tree") }
            files.append((archivePath(module), bytes, 0o644))
        }
        try writeArchive(files, directories: ["scripts", "imagectl-virtiofs"], to: out)
    }

    /// A newc cpio archive (the only format the kernel unpacks) of `files`, owned by root.
    static func writeArchive(_ files: [(String, [UInt8], mode_t)], directories: [String], to fd: Int32) throws(VMError) {
        guard let archive = archive_write_new() else { throw .setupFailed("libarchive: out of memory") }
        defer { archive_write_free(archive) }
        func check(_ result: Int32, _ step: String) throws(VMError) {
            guard result >= ARCHIVE_WARN else {
                let text = archive_error_string(archive).map { String(cString: $0) } ?? "error \(result)"
                throw .setupFailed("writing the initrd appendix: \(step): \(text)")
            }
        }
        try check(archive_write_set_format_cpio_newc(archive), "newc format")
        // No padding to a 10 KiB record: the archive ends where its trailer does.
        try check(archive_write_set_bytes_in_last_block(archive, 1), "last block")
        try check(archive_write_open_fd(archive, fd), "open")
        guard let entry = archive_entry_new() else { throw .setupFailed("libarchive: out of memory") }
        defer { archive_entry_free(entry) }
        for directory in directories {
            archive_entry_clear(entry)
            archive_entry_set_pathname(entry, directory)
            archive_entry_set_filetype(entry, 0o040000) // AE_IFDIR
            archive_entry_set_perm(entry, 0o755)
            archive_entry_set_size(entry, 0)
            archive_entry_set_mtime(entry, 0, 0)
            try check(archive_write_header(archive, entry), "header \(directory)")
        }
        for (path, bytes, mode) in files {
            archive_entry_clear(entry)
            archive_entry_set_pathname(entry, path)
            archive_entry_set_filetype(entry, 0o100000) // AE_IFREG
            archive_entry_set_perm(entry, mode)
            archive_entry_set_size(entry, Int64(bytes.count))
            archive_entry_set_mtime(entry, 0, 0)
            try check(archive_write_header(archive, entry), "header \(path)")
            let n = bytes.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
            guard n == bytes.count else { try check(Int32(ARCHIVE_FATAL), "data \(path)"); return }
        }
        try check(archive_write_close(archive), "close")
    }
}
