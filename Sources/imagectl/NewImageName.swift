import ImageStore
import Machines

/// The one rule for the name of an image the CLI creates (import-*, pull-*, clone, rename): the
/// store's own rule (no `.raw` or side-file suffix, no `.#`) and the machine-name rule that
/// `run -M` and `vm -M` apply, so that every image put in the pool can be run by its name.
/// Names already in the pool are looked up with the store's rule alone, so an image made by an
/// older imagectl or by hand can still be renamed or removed.
enum NewImageName {
    static func validate(_ text: String) throws -> ImageName {
        let name = try ImageName(validating: text)  // its errors exit 2 (CommandFailure.status)
        guard MachineRecord.isValidName(text) else {
            throw CommandFailure(message: "invalid image name '\(text)': an image name must be a machine name (\(MachineRecord.nameRule))", status: 2)
        }
        return name
    }
}
