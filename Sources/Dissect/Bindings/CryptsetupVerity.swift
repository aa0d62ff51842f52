import CCryptsetup
import Foundation
import Glibc
import Logging

/// libcryptsetup's messages for one call sequence. libcryptsetup prints to stderr unless a log
/// callback is set; this one collects them so they end up in the thrown error (and in the debug
/// log), never raw on the terminal.
final class CryptsetupLog {
    var messages: [String] = []
    static let logger = Logger(label: "imagectl.cryptsetup")

    /// The C callback: `usrptr` is an unretained CryptsetupLog (or nil for the default log).
    static let callback: @convention(c) (Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { level, message, context in
        guard let message else { return }
        let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return }
        logger.debug("\(text)", metadata: ["level": "\(level)"])
        // Debug chatter is not an explanation; keep errors and normal messages.
        guard level == CRYPT_LOG_ERROR || level == CRYPT_LOG_NORMAL else { return }
        if let context {
            Unmanaged<CryptsetupLog>.fromOpaque(context).takeUnretainedValue().messages.append(text)
        }
    }

    /// Routes libcryptsetup's default log (used before a device handle exists) to the debug log.
    static let installDefault: Void = {
        img_crypt_set_log_callback(nil, callback, nil)
    }()

    /// Points a device handle's log at this collector. The collector must outlive the handle.
    func attach(to device: OpaquePointer?) {
        img_crypt_set_log_callback(device, CryptsetupLog.callback, Unmanaged.passUnretained(self).toOpaque())
    }
}

/// A failed libcryptsetup call, with the library's own messages.
public struct CryptsetupError: Swift.Error, CustomStringConvertible, Sendable {
    public var call: String
    public var path: String
    public var code: Int32
    public var messages: [String]

    public var description: String {
        // -ELIBACC: libcryptsetup itself could not be loaded (CCryptsetup loads it on first use).
        if code == -ELIBACC, let loadError = img_crypt_load_error() { return "\(call) on \(path): \(String(cString: loadError))" }
        let reason = String(cString: strerror(-code))
        let detail = messages.isEmpty ? "" : " (" + messages.joined(separator: "; ") + ")"
        return "\(call) on \(path): \(reason)\(detail)"
    }
}

/// Reading verity metadata with libcryptsetup: a cross-check of the Swift parser, and what the
/// kernel path uses.
public enum CryptsetupVerity {
    /// The verity superblock at `offset` of `path` as libcryptsetup reads it (crypt_init +
    /// crypt_load(CRYPT_VERITY) + crypt_get_verity_info). Works on a plain file, no loop device.
    public static func readSuperblock(path: String, offset: UInt64 = 0) throws -> VeritySuperblock {
        _ = CryptsetupLog.installDefault
        let log = CryptsetupLog()
        var device: OpaquePointer?
        let initResult = img_crypt_init(&device, path)
        guard initResult == 0 else { throw CryptsetupError(call: "crypt_init", path: path, code: initResult, messages: log.messages) }
        defer { img_crypt_free(device) }
        log.attach(to: device)
        var params = crypt_params_verity()
        params.hash_area_offset = offset
        let loadResult = img_crypt_load(device, CRYPT_VERITY, &params)
        guard loadResult == 0 else { throw CryptsetupError(call: "crypt_load(VERITY)", path: path, code: loadResult, messages: log.messages) }
        var info = crypt_params_verity()
        let infoResult = img_crypt_get_verity_info(device, &info)
        guard infoResult == 0 else { throw CryptsetupError(call: "crypt_get_verity_info", path: path, code: infoResult, messages: log.messages) }
        var salt: [UInt8] = []
        if let pointer = info.salt, info.salt_size > 0 {
            let raw = UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self)
            salt = Array(UnsafeBufferPointer(start: raw, count: Int(min(info.salt_size, 256))))
        }
        var uuid = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        if let text = img_crypt_get_uuid(device), let parsed = UUID(uuidString: String(cString: text)) { uuid = parsed }
        return VeritySuperblock(hashType: info.hash_type, algorithm: info.hash_name.map { String(cString: $0) } ?? "",
                                dataBlockSize: info.data_block_size, hashBlockSize: info.hash_block_size,
                                dataBlocks: info.data_size, salt: salt, uuid: uuid)
    }
}

// libcryptsetup.h defines these with UINT32_C(), which Swift does not import.
/// CRYPT_VERITY_NO_HEADER: the hash area has no superblock.
let cryptVerityNoHeader: UInt32 = 1 << 0
/// CRYPT_ACTIVATE_READONLY: dm-verity is always read-only.
let cryptActivateReadOnly: UInt32 = 1 << 0

/// Kernel dm-verity through libcryptsetup, for mounting a verity-protected partition.
public enum DMVerity {
    public enum Error: Swift.Error, CustomStringConvertible {
        case unavailable
        case dataOffset(UInt64)
        case badName(String)

        public var description: String {
            switch self {
            case .unavailable:
                return "device-mapper not available: the kernel has no device-mapper (/dev/mapper/control missing or not registered in /proc/misc)"
            case .dataOffset(let offset):
                return "dm-verity needs the data area at the start of its device (it is at byte \(offset)): attach a loop device for the partition first"
            case .badName(let name):
                return "invalid device-mapper name \"\(name)\""
            }
        }
    }

    /// Why libcryptsetup cannot be loaded (it is dlopen()ed on first use), or nil when it can:
    /// `imagectl --version` reports it.
    public static var libcryptsetupUnavailableReason: String? {
        img_crypt_load_error().map { String(cString: $0) }
    }

    /// True when the kernel has device-mapper: /dev/mapper/control exists AND the kernel
    /// registered the device (/proc/misc lists "device-mapper"). The node alone is no proof:
    /// libdevmapper creates it by itself, even on a kernel without device-mapper.
    public static var isAvailable: Bool {
        guard FileManager.default.fileExists(atPath: "/dev/mapper/control"),
              let misc = try? String(contentsOfFile: "/proc/misc", encoding: .utf8) else { return false }
        return misc.split(separator: "\n").contains { $0.hasSuffix(" device-mapper") }
    }

    /// Opens /dev/mapper/NAME as a read-only dm-verity device over the target (a regular file is
    /// put on a loop device by libcryptsetup): crypt_init_data_device, crypt_load(CRYPT_VERITY) (or
    /// crypt_format with CRYPT_VERITY_NO_HEADER for explicit parameters), then
    /// crypt_activate_by_signed_key when a signature is given (the kernel checks it against its
    /// keyring) or crypt_activate_by_volume_key. Returns the device path.
    public static func activate(name: String, target: VerityTarget, rootHash: [UInt8], signature: [UInt8]?) throws -> String {
        // A request that could never work is refused as such first, on any host.
        guard !name.isEmpty, !name.contains("/"), name.utf8.count < 128 else { throw Error.badName(name) }
        guard target.dataOffset == 0 else { throw Error.dataOffset(target.dataOffset) }
        guard isAvailable else { throw Error.unavailable }
        _ = CryptsetupLog.installDefault
        let log = CryptsetupLog()
        var device: OpaquePointer?
        let initResult = img_crypt_init_data_device(&device, target.hashPath, target.dataPath)
        guard initResult == 0 else {
            throw CryptsetupError(call: "crypt_init_data_device", path: target.hashPath, code: initResult, messages: log.messages)
        }
        defer { img_crypt_free(device) }
        log.attach(to: device)

        if let explicit = target.parameters {
            let result = explicit.algorithm.withCString { hashName in
                explicit.salt.withUnsafeBufferPointer { salt in
                    salt.withMemoryRebound(to: CChar.self) { saltChars in
                        let saltPointer = saltChars.baseAddress
                        var params = crypt_params_verity()
                        params.hash_name = hashName
                        params.salt = saltPointer
                        params.salt_size = UInt32(salt.count)
                        params.hash_type = explicit.hashType
                        params.data_block_size = explicit.dataBlockSize
                        params.hash_block_size = explicit.hashBlockSize
                        params.data_size = explicit.dataBlocks
                        params.hash_area_offset = target.hashOffset
                        params.flags = cryptVerityNoHeader
                        return img_crypt_format(device, CRYPT_VERITY, nil, nil, nil, nil, 0, &params)
                    }
                }
            }
            guard result == 0 else { throw CryptsetupError(call: "crypt_format(VERITY)", path: target.hashPath, code: result, messages: log.messages) }
        } else {
            var params = crypt_params_verity()
            params.hash_area_offset = target.hashOffset
            let result = img_crypt_load(device, CRYPT_VERITY, &params)
            guard result == 0 else { throw CryptsetupError(call: "crypt_load(VERITY)", path: target.hashPath, code: result, messages: log.messages) }
        }

        let flags = cryptActivateReadOnly
        let result: Int32 = rootHash.withUnsafeBufferPointer { hash in
            hash.withMemoryRebound(to: CChar.self) { key in
                if let signature {
                    return signature.withUnsafeBufferPointer { sig in
                        sig.withMemoryRebound(to: CChar.self) { sigChars in
                            img_crypt_activate_by_signed_key(device, name, key.baseAddress, key.count, sigChars.baseAddress, sigChars.count, flags)
                        }
                    }
                }
                return img_crypt_activate_by_volume_key(device, name, key.baseAddress, key.count, flags)
            }
        }
        guard result >= 0 else {
            throw CryptsetupError(call: signature == nil ? "crypt_activate_by_volume_key" : "crypt_activate_by_signed_key",
                                  path: target.dataPath, code: result, messages: log.messages)
        }
        return "/dev/mapper/\(name)"
    }

    /// Removes /dev/mapper/NAME: crypt_init_by_name + crypt_deactivate.
    public static func deactivate(name: String) throws {
        guard isAvailable else { throw Error.unavailable }
        _ = CryptsetupLog.installDefault
        let log = CryptsetupLog()
        var device: OpaquePointer?
        let initResult = img_crypt_init_by_name(&device, name)
        guard initResult == 0 else { throw CryptsetupError(call: "crypt_init_by_name", path: name, code: initResult, messages: log.messages) }
        defer { img_crypt_free(device) }
        log.attach(to: device)
        let result = img_crypt_deactivate(device, name)
        guard result == 0 else { throw CryptsetupError(call: "crypt_deactivate", path: name, code: result, messages: log.messages) }
    }
}
