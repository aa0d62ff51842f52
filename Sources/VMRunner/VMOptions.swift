import Foundation
import LinuxSystem

/// Parsing of `imagectl vm` option values (sizes, booleans, credentials, CIDs, colours) and the
/// KVM-or-TCG decision: pure functions of their input.
public enum VMOptions {
    /// "2G", "512M", "1048576", "1.5G"; K/M/G/T are powers of 1024, as in systemd.
    public static func parseSize(_ text: String, option: String) throws(VMError) -> UInt64 {
        var digits = text.trimmingCharacters(in: .whitespaces)
        var multiplier: Double = 1
        if let last = digits.last?.uppercased(), let power = ["B": 0, "K": 1, "M": 2, "G": 3, "T": 4][last] {
            digits.removeLast()
            multiplier = pow(1024, Double(power))
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let number = Double(digits), number > 0 else { throw .invalidSize(option: option, value: text) }
        let bytes = number * multiplier
        guard bytes >= 1, bytes < Double(UInt64.max / 2) else { throw .invalidSize(option: option, value: text) }
        return UInt64(bytes.rounded(.up))
    }

    /// systemd's boolean spellings.
    public static func parseBoolean(_ text: String, option: String) throws(VMError) -> Bool {
        switch text.lowercased() {
        case "1", "yes", "y", "true", "t", "on": return true
        case "0", "no", "n", "false", "f", "off": return false
        default: throw .invalidValue(option: option, value: text, expected: "yes or no")
        }
    }

    public enum Tristate: String, Sendable, Equatable { case auto, yes, no }

    /// auto/yes/no plus the boolean spellings.
    public static func parseTristate(_ text: String, option: String) throws(VMError) -> Tristate {
        if text.lowercased() == "auto" { return .auto }
        do {
            return try parseBoolean(text, option: option) ? .yes : .no
        } catch {
            throw .invalidValue(option: option, value: text, expected: "auto, yes or no")
        }
    }

    /// What the host's /dev/kvm can do, as probed by `KVMHost.probe()`.
    public struct KVMHost: Sendable, Equatable {
        /// nil when /dev/kvm opens read-write; otherwise why not.
        public var unusableReason: String?
        /// The kvm_pvm module is loaded: /dev/kvm is nested PVM, whose guests must be PVM-aware.
        public var nestedPVM: Bool
        public init(unusableReason: String?, nestedPVM: Bool) {
            self.unusableReason = unusableReason
            self.nestedPVM = nestedPVM
        }

        /// Opens /dev/kvm and looks for /sys/module/kvm_pvm (paths overridable for tests).
        public static func probe(device: String = "/dev/kvm", pvmModule: String = "/sys/module/kvm_pvm") -> KVMHost {
            var reason: String?
            if !FileManager.default.fileExists(atPath: device) {
                reason = "\(device) does not exist"
            } else if let handle = FileHandle(forUpdatingAtPath: device) {
                try? handle.close()
            } else {
                reason = "\(device) cannot be opened read-write"
            }
            return KVMHost(unusableReason: reason, nestedPVM: FileManager.default.fileExists(atPath: pvmModule))
        }
    }

    /// --kvm=: the accelerator, and a warning to print when auto falls back to TCG for a reason
    /// the user may not expect. yes on a host without a usable KVM is an error saying why.
    public static func chooseAccelerator(_ mode: Tristate, host: KVMHost) throws(VMError) -> (VMSpec.Accelerator, warning: String?) {
        let pvm = "/dev/kvm is nested PVM (the kvm_pvm module is loaded), where a stock guest kernel hangs at boot"
        switch mode {
        case .no:
            return (.tcg, nil)
        case .yes:
            if let reason = host.unusableReason { throw .kvmUnavailable(reason) }
            if host.nestedPVM { throw .kvmUnavailable(pvm) }
            return (.kvm, nil)
        case .auto:
            if host.unusableReason != nil { return (.tcg, nil) }
            if host.nestedPVM { return (.tcg, pvm + "; using TCG (software emulation, slower)") }
            return (.kvm, nil)
        }
    }

    /// --set-credential=ID:VALUE; VALUE takes C escapes (\n, \t, \\, \xHH, octal \NNN).
    public static func parseSetCredential(_ text: String) throws(VMError) -> VMSpec.Credential {
        let (id, value) = try splitCredential(text, option: "--set-credential")
        return VMSpec.Credential(id: id, value: try unescapeC(value))
    }

    /// --load-credential=ID:PATH; the file's bytes (at most 1 MiB, systemd's credential limit).
    public static func parseLoadCredential(_ text: String) throws(VMError) -> VMSpec.Credential {
        let (id, path) = try splitCredential(text, option: "--load-credential")
        // readRegularFile opens O_NONBLOCK and checks the type on the descriptor: a FIFO given
        // as the credential file is refused instead of blocking.
        let data: [UInt8]
        do {
            data = try readRegularFile(path, upTo: (1 << 20) + 1)
        } catch {
            switch error.errno {
            case .noSuchFileOrDirectory: throw .missingFile(option: "--load-credential", path: path)
            case .invalidArgument: throw .invalidCredential("--load-credential: \(path) is not a regular file")
            default: throw .invalidCredential("--load-credential: \(error)")
            }
        }
        guard data.count <= 1 << 20 else { throw .invalidCredential("--load-credential: \(path) is larger than 1 MiB") }
        return VMSpec.Credential(id: id, value: data)
    }

    static func splitCredential(_ text: String, option: String) throws(VMError) -> (String, String) {
        guard let colon = text.firstIndex(of: ":") else {
            throw .invalidCredential("\(option): \"\(text)\" is not ID:\(option == "--set-credential" ? "VALUE" : "PATH")")
        }
        let id = String(text[..<colon])
        guard isValidCredentialID(id) else { throw .invalidCredential("\(option): invalid credential name \"\(id)\"") }
        return (id, String(text[text.index(after: colon)...]))
    }

    /// systemd's credential_name_valid(): a file name, at most 255 bytes; "=" would end the
    /// SMBIOS string's name part, so it is refused too.
    public static func isValidCredentialID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 255 && id != "." && id != ".." && !id.contains("/") && !id.contains("=")
            && id.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f }
    }

    /// C-style escapes as systemd's cunescape() reads them.
    public static func unescapeC(_ text: String) throws(VMError) -> [UInt8] {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var i = 0
        func bad() -> VMError { .invalidCredential("--set-credential: bad escape sequence in \"\(text)\"") }
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "\\") else { out.append(bytes[i]); i += 1; continue }
            guard i + 1 < bytes.count else { throw bad() }
            let c = bytes[i + 1]
            i += 2
            switch c {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "v"): out.append(0x0b)
            case UInt8(ascii: "s"): out.append(0x20)
            case UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "'"): out.append(c)
            case UInt8(ascii: "x"):
                guard i + 2 <= bytes.count, let v = UInt8(String(decoding: bytes[i..<i + 2], as: UTF8.self), radix: 16) else { throw bad() }
                out.append(v)
                i += 2
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard i + 2 <= bytes.count, let v = UInt16(String(decoding: [c] + bytes[i..<i + 2], as: UTF8.self), radix: 8), v <= 0xff else { throw bad() }
                out.append(UInt8(v))
                i += 2
            default: throw bad()
            }
        }
        return out
    }

    /// --vsock-cid=: 3 ... 0xFFFFFFFE (0-2 are reserved, 0xFFFFFFFF is "any").
    public static func parseCID(_ text: String) throws(VMError) -> UInt32 {
        let value: UInt32?
        if text.lowercased().hasPrefix("0x") { value = UInt32(text.dropFirst(2), radix: 16) } else { value = UInt32(text) }
        guard let value, value >= 3, value != UInt32.max else {
            throw .invalidValue(option: "--vsock-cid", value: text, expected: "a number from 3 to 4294967294")
        }
        return value
    }

    /// --background=: an ANSI SGR background colour such as "40", "48;5;17" or "48;2;0;0;80".
    public static func parseBackground(_ text: String) throws(VMError) -> String {
        guard !text.isEmpty, text.count <= 32, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ";") }) else {
            throw .invalidValue(option: "--background", value: text, expected: "an ANSI SGR colour like 40 or 48;2;0;0;80")
        }
        return text
    }

    /// --cpus=: 1 ... 255 (q35's limit without an IOMMU for x2APIC).
    public static func parseCPUs(_ text: String) throws(VMError) -> Int {
        guard let value = Int(text), (1...255).contains(value) else {
            throw .invalidValue(option: "--cpus", value: text, expected: "a number from 1 to 255")
        }
        return value
    }

    /// Raw or qcow2, from the first four bytes ("QFI\xfb" is qcow2's magic).
    /// A qcow2 image's virtual disk size (the header's big-endian size field at byte 24), nil
    /// when it cannot be read.
    public static func qcow2VirtualSize(path: String) -> UInt64? {
        guard let descriptor = try? UserFile.open(path, accepting: .image).descriptor else { return nil }
        let handle = FileHandle(fileDescriptor: descriptor.rawValue, closeOnDealloc: true)
        defer { try? handle.close() }
        guard let header = try? handle.read(upToCount: 32), header.count == 32 else { return nil }
        return header[24..<32].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    public static func detectFormat(path: String) -> VMSpec.DiskFormat {
        // UserFile: a FIFO must not block the probe (prepare refuses it with a message first).
        guard let descriptor = try? UserFile.open(path, accepting: .image).descriptor else { return .raw }
        let handle = FileHandle(fileDescriptor: descriptor.rawValue, closeOnDealloc: true)
        defer { try? handle.close() }
        let magic = (try? handle.read(upToCount: 4)) ?? Data()
        return magic == Data([0x51, 0x46, 0x49, 0xfb]) ? .qcow2 : .raw
    }
}
