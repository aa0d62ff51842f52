import Foundation

/// Where imagectl keeps its state for running machines: `$IMAGECTL_RUNTIME_DIR` (tests point it
/// at a scratch directory), default /run/imagectl. The machine registry (`machines`), the
/// container runner's user namespace reservations (`userns`) and compiled seccomp programs
/// (`seccomp`) live below it. (The staging mount points under /run/imagectl/runner stay fixed:
/// Runner's Leftovers.runnerDirectory.)
package enum RuntimeDirectory {
    package static var path: String {
        ProcessInfo.processInfo.environment["IMAGECTL_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/run/imagectl"
    }
}
