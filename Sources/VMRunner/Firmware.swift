import Foundation

/// A QEMU firmware descriptor (qemu's docs/interop/firmware.json schema), the subset needed to
/// boot x86_64 UEFI from flash: which file is the code, which the NVRAM template, and features.
public struct FirmwareDescriptor: Sendable, Equatable {
    public var path: String
    public var description: String
    public var code: String
    public var codeFormat: VMSpec.DiskFormat
    public var nvramTemplate: String?
    public var nvramFormat: VMSpec.DiskFormat
    public var features: [String]

    public var secureBoot: Bool { features.contains("secure-boot") }
    public var requiresSMM: Bool { features.contains("requires-smm") }

    /// Directories searched in qemu's order; a file name in an earlier one hides later ones.
    public static let searchDirectories = ["/etc/qemu/firmware", "/usr/share/qemu/firmware"]

    private struct JSON: Decodable {
        struct Mapping: Decodable {
            struct File: Decodable { var filename: String; var format: String? }
            var device: String
            var executable: File?
            var nvramTemplate: File?
            enum CodingKeys: String, CodingKey { case device, executable, nvramTemplate = "nvram-template" }
        }
        struct Target: Decodable { var architecture: String; var machines: [String]? }
        var description: String?
        var interfaceTypes: [String]
        var mapping: Mapping
        var targets: [Target]
        var features: [String]?
        enum CodingKeys: String, CodingKey {
            case description, mapping, targets, features
            case interfaceTypes = "interface-types"
        }
    }

    /// Parses a descriptor. Returns nil for one that is valid but not usable here (not UEFI, not
    /// x86_64 q35, not flash-mapped); throws for one that cannot be read as a descriptor.
    public static func parse(_ data: Data, path: String) throws(VMError) -> FirmwareDescriptor? {
        let json: JSON
        do {
            json = try JSONDecoder().decode(JSON.self, from: data)
        } catch {
            throw .badFirmwareDescriptor(path: path, reason: "not a QEMU firmware descriptor")
        }
        guard json.interfaceTypes.contains("uefi"), json.mapping.device == "flash",
              let executable = json.mapping.executable,
              json.targets.contains(where: { $0.architecture == "x86_64" && ($0.machines ?? []).contains(where: { $0.hasPrefix("pc-q35") }) })
        else { return nil }
        func format(_ text: String?) throws(VMError) -> VMSpec.DiskFormat {
            guard let text else { return .raw }
            guard let format = VMSpec.DiskFormat(rawValue: text) else {
                throw .badFirmwareDescriptor(path: path, reason: "unsupported flash format \"\(text)\"")
            }
            return format
        }
        return FirmwareDescriptor(
            path: path, description: json.description ?? "", code: executable.filename,
            codeFormat: try format(executable.format), nvramTemplate: json.mapping.nvramTemplate?.filename,
            nvramFormat: try format(json.mapping.nvramTemplate?.format), features: json.features ?? [])
    }

    /// Usable descriptors from the search directories, in qemu's order (by file name).
    public static func discover(directories: [String] = searchDirectories) -> [FirmwareDescriptor] {
        var byName: [String: String] = [:]
        for directory in directories.reversed() {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names where name.hasSuffix(".json") { byName[name] = directory + "/" + name }
        }
        return byName.keys.sorted().compactMap { name in
            guard let path = byName[name], let data = FileManager.default.contents(atPath: path) else { return nil }
            return (try? parse(data, path: path)) ?? nil
        }
    }

    /// systemd-vmspawn's choice: unset takes the first; yes the first with secure boot; no the
    /// first without.
    public static func select(_ descriptors: [FirmwareDescriptor], secureBoot: Bool?) -> FirmwareDescriptor? {
        guard let secureBoot else { return descriptors.first }
        return descriptors.first { $0.secureBoot == secureBoot }
    }

    /// A descriptor named by --firmware=PATH.
    public static func load(path: String) throws(VMError) -> FirmwareDescriptor {
        guard let data = FileManager.default.contents(atPath: path) else { throw .missingFile(option: "--firmware", path: path) }
        guard let descriptor = try parse(data, path: path) else {
            throw .badFirmwareDescriptor(path: path, reason: "not an x86_64 q35 UEFI flash firmware")
        }
        return descriptor
    }
}
