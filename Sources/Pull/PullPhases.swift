import ProgressReport

/// The phases of a pull, as the progress reporter names them.
enum PullPhase: String, Sendable {
    case checksum, signature, download, sideFiles = "side-files", verify, commit
    case manifest, config, layer, pack, upload
}

extension ProgressReporter {
    func begin(_ phase: PullPhase, _ detail: String) { begin(phase.rawValue, detail) }
    func advance(_ phase: PullPhase, done: UInt64, total: UInt64?, force: Bool = false) {
        advance(phase.rawValue, done: done, total: total, force: force)
    }
    func end(_ phase: PullPhase, _ detail: String, bytes: UInt64? = nil) { end(phase.rawValue, detail, bytes: bytes) }
}
