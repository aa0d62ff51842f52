import Machines
import Runner

// A machine name that a live machine holds already makes the CLI exit 16 (busy), as a locked
// image does for the store verbs.
extension RunnerError: BusyReporting {
    var isBusy: Bool {
        if case .alreadyRunning = self { return true }
        return false
    }
}

extension MachineError: BusyReporting {}
