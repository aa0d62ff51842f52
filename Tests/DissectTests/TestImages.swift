import Foundation
import Testing
import TestSupport

/// Small images built inside the tests with the Debian tools (systemd-repart, sfdisk, mkfs.*),
/// so each test makes its own input.
enum TestImages {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// A small OS tree: os-release, hostname, machine-id, an init, and /home /srv /var.
    static func tree(in dir: TemporaryDirectory, name: String = "tree") throws -> String {
        let root = dir.appending(name)
        let fm = FileManager.default
        for sub in ["etc", "usr/lib", "sbin", "home", "srv", "var", "efi"] {
            try fm.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        try "ID=imagectl-test\nVERSION_ID=\"1.0\"\nPRETTY_NAME='imagectl test'\n".write(toFile: "\(root)/usr/lib/os-release", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: "\(root)/etc/os-release", withDestinationPath: "../usr/lib/os-release")
        try "testhost\n".write(toFile: "\(root)/etc/hostname", atomically: true, encoding: .utf8)
        try "5f1a1b2c3d4e4f5a8b9c0d1e2f3a4b5c\n".write(toFile: "\(root)/etc/machine-id", atomically: true, encoding: .utf8)
        try "#!/bin/sh\n".write(toFile: "\(root)/sbin/init", atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(root)/sbin/init")
        return root
    }

    /// A directory holding one marker file.
    static func marker(in dir: TemporaryDirectory, _ name: String) throws -> String {
        let path = dir.appending("content-\(name)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try "\(name)\n".write(toFile: "\(path)/marker", atomically: true, encoding: .utf8)
        return path
    }

    /// Runs systemd-repart with the given definition files ([file name: content]); returns the
    /// image path and repart's JSON (for the root hash).
    @discardableResult
    static func repart(in dir: TemporaryDirectory, name: String, definitions: [String: String],
                       extra: [String] = []) throws -> (path: String, json: String) {
        let defs = dir.appending("defs-\(name)")
        try FileManager.default.createDirectory(atPath: defs, withIntermediateDirectories: true)
        for (file, content) in definitions {
            try content.write(toFile: "\(defs)/\(file)", atomically: true, encoding: .utf8)
        }
        let image = dir.appending("\(name).raw")
        let result = try Tool.run("systemd-repart", ["--dry-run=no", "--definitions=\(defs)", "--empty=create", "--size=auto",
                                                    "--seed=b04e2b1e-6f8e-4a0c-9d6e-0123456789ab", "--json=short"] + extra + [image])
        guard result.status == 0 else { throw Failure(description: "systemd-repart failed: \(result.stderr)") }
        return (image, result.stdout)
    }

    static func run(_ tool: String, _ args: [String]) throws {
        let r = try Tool.run(tool, args)
        guard r.status == 0 else { throw Failure(description: "\(tool) \(args.joined(separator: " ")) failed: \(r.stderr)") }
    }

    /// A bare filesystem image of `fstype` holding `tree`.
    static func bare(_ fstype: String, tree: String, in dir: TemporaryDirectory) throws -> String {
        let path = dir.appending("bare-\(fstype).raw")
        func truncate(_ size: String) throws { try run("truncate", ["-s", size, path]) }
        switch fstype {
        case "ext4":
            try truncate("16M"); try run("mkfs.ext4", ["-q", "-L", "bare-ext4", "-d", tree, path])
        case "btrfs":
            try truncate("128M"); try run("mkfs.btrfs", ["-q", "-L", "bare-btrfs", "--rootdir", tree, path])
        case "xfs":
            try truncate("300M"); try run("mkfs.xfs", ["-q", "-L", "bare-xfs", path])
        case "squashfs":
            try run("mksquashfs", [tree, path, "-quiet", "-noappend", "-no-progress"])
        case "erofs":
            try run("mkfs.erofs", [path, tree])
        case "vfat":
            try truncate("16M"); try run("mkfs.vfat", ["-n", "BAREVFAT", path])
        default:
            throw Failure(description: "unknown fstype \(fstype)")
        }
        return path
    }

    /// An MBR disk (sfdisk) with one bootable Linux partition holding an ext4 of `tree`.
    static func mbr(tree: String, in dir: TemporaryDirectory) throws -> String {
        let path = dir.appending("mbr.raw")
        let fs = dir.appending("mbr-part.ext4")
        try run("truncate", ["-s", "20M", fs])
        try run("mkfs.ext4", ["-q", "-L", "mbr-root", "-d", tree, fs])
        try run("truncate", ["-s", "22M", path])
        let script = dir.appending("sfdisk.txt")
        try "label: dos\nstart=2048, size=40960, type=83, bootable\n".write(toFile: script, atomically: true, encoding: .utf8)
        let r = try Tool.run("sfdisk", ["-q", path], stdin: script)
        guard r.status == 0 else { throw Failure(description: "sfdisk failed: \(r.stderr)") }
        try run("dd", ["if=\(fs)", "of=\(path)", "bs=1M", "seek=1", "conv=notrunc", "status=none"])
        return path
    }
}
