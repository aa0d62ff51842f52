import Foundation
import LinuxSystem
import SystemPackage

/// The kernel and initrd of a directory tree booted with `vm -D`: the tree's own, found where
/// Debian (/boot/vmlinuz-V, /boot/initrd.img-V), Fedora (/boot/initramfs-V.img) and the
/// kernel-install layout (/usr/lib/modules/V/vmlinuz, .../initrd) keep them; the newest
/// version wins. Every lookup stays inside the tree (openat2 RESOLVE_IN_ROOT): a tree's symlink
/// cannot make imagectl hand a host file to the guest.
public struct TreeKernel: Sendable, Equatable {
    /// Paths inside the tree (absolute, "/" being the tree's root).
    public var kernel: String
    public var initrd: String?
    public var version: String

    /// Finds the newest kernel of the tree whose root is `root`.
    public static func find(in root: FileDescriptor) -> TreeKernel? {
        var found: [TreeKernel] = []
        for name in OpenBeneath.directoryEntries("/boot", in: root) ?? [] where name.hasPrefix("vmlinuz-") {
            let version = String(name.dropFirst("vmlinuz-".count))
            guard !version.isEmpty, isRegular("/boot/" + name, in: root) else { continue }
            found.append(TreeKernel(kernel: "/boot/" + name, initrd: initrd(for: version, in: root), version: version))
        }
        for base in ["/usr/lib/modules", "/lib/modules"] {
            for version in OpenBeneath.directoryEntries(base, in: root) ?? [] where !found.contains(where: { $0.version == version }) {
                let kernel = "\(base)/\(version)/vmlinuz"
                guard isRegular(kernel, in: root) else { continue }
                found.append(TreeKernel(kernel: kernel, initrd: initrd(for: version, in: root), version: version))
            }
        }
        return found.max { compareVersions($0.version, $1.version) }
    }

    static func initrd(for version: String, in root: FileDescriptor) -> String? {
        ["/boot/initrd.img-\(version)", "/boot/initramfs-\(version).img", "/usr/lib/modules/\(version)/initrd",
         "/lib/modules/\(version)/initrd"].first { isRegular($0, in: root) }
    }

    static func isRegular(_ path: String, in root: FileDescriptor) -> Bool {
        OpenBeneath.fileType(path, in: root) == S_IFREG
    }

    /// Version order as `sort -V` has it for kernel versions: runs of digits compare as numbers.
    static func compareVersions(_ a: String, _ b: String) -> Bool {
        func pieces(_ s: String) -> [Either] {
            var out: [Either] = []
            var current = ""
            var digits = false
            for c in s {
                let isDigit = c.isASCII && c.isNumber
                if !current.isEmpty && isDigit != digits {
                    out.append(digits ? .number(Int(current) ?? 0) : .text(current))
                    current = ""
                }
                digits = isDigit
                current.append(c)
            }
            if !current.isEmpty { out.append(digits ? .number(Int(current) ?? 0) : .text(current)) }
            return out
        }
        let (x, y) = (pieces(a), pieces(b))
        for (p, q) in zip(x, y) where p != q {
            switch (p, q) {
            case (.number(let m), .number(let n)): return m < n
            case (.text(let m), .text(let n)): return m < n
            case (.number, .text): return false
            case (.text, .number): return true
            }
        }
        return x.count < y.count
    }

    enum Either: Equatable { case number(Int), text(String) }

    /// The version string in a bzImage's setup header ("6.1.0-57-amd64 (debian-kernel@...) #1
    /// SMP ..." up to the first space), for a --linux= kernel whose modules are looked up in
    /// the tree. nil when the file is no bzImage.
    public static func bzImageVersion(_ bytes: [UInt8]) -> String? {
        // "HdrS" at 0x202; kernel_version (u16 at 0x20e) points to the string, 0x200 bytes before.
        guard bytes.count > 0x210, bytes[0x202..<0x206].elementsEqual("HdrS".utf8) else { return nil }
        let offset = Int(bytes[0x20e]) | Int(bytes[0x20f]) << 8
        let start = offset + 0x200
        guard offset > 0, start < bytes.count else { return nil }
        let text = bytes[start..<min(bytes.count, start + 256)].prefix { $0 != 0 && $0 != 0x20 }
        let version = String(decoding: text, as: UTF8.self)
        return version.isEmpty ? nil : version
    }
}
