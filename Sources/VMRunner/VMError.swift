import Machines

/// What can be wrong with an `imagectl vm` request or its start.
public enum VMError: Swift.Error, CustomStringConvertible, Equatable {
    case invalidSize(option: String, value: String)
    case invalidValue(option: String, value: String, expected: String)
    case missingFile(option: String, path: String)
    case imageNotFound(String)
    case imageNotUsable(path: String, reason: String)
    case noRootPartition(String)
    case badFirmwareDescriptor(path: String, reason: String)
    case noFirmware(String)
    case kvmUnavailable(String)
    case facilityMissing(option: String, reason: String)
    case invalidCredential(String)
    case toolMissing(String)
    case toolFailed(tool: String, message: String)
    case setupFailed(String)
    case qemuFailed(status: Int32)
    case invalidMachineName(String)

    public var description: String {
        switch self {
        case .invalidSize(let option, let value): "invalid size \"\(value)\" for \(option) (expected a number with an optional K, M, G or T suffix)"
        case .invalidValue(let option, let value, let expected): "invalid value \"\(value)\" for \(option) (expected \(expected))"
        case .missingFile(let option, let path): "\(option): \(path): no such file"
        case .imageNotFound(let name): "no image file or store image named \"\(name)\""
        case .imageNotUsable(let path, let reason): "\(path): \(reason)"
        case .noRootPartition(let path): "\(path): no root partition found to pass as root=PARTUUID= (give root=... as an argument)"
        case .badFirmwareDescriptor(let path, let reason): "firmware descriptor \(path): \(reason)"
        case .noFirmware(let text): text
        case .kvmUnavailable(let reason): "--kvm=yes: \(reason)"
        case .facilityMissing(let option, let reason): "\(option): \(reason)"
        case .invalidCredential(let text): text
        case .toolMissing(let tool): "\(tool) not found (install it with scripts/install-deps.sh)"
        case .toolFailed(let tool, let message): "\(tool) failed: \(message)"
        case .setupFailed(let text): text
        case .qemuFailed(let status): "qemu exited with status \(status)"
        case .invalidMachineName(let name): "invalid machine name \"\(name)\" (\(MachineRecord.nameRule))"
        }
    }
}
