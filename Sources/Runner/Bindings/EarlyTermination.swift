import Glibc

/// SIGTERM/SIGINT while the root is being prepared (an image verified and mounted, a store
/// image locked): without a handler the default action would end imagectl there and leave the
/// mounts and loop devices behind. The handler only records the signal; once the container runs
/// and imagectl's forwarder is in place, `replay` raises it again, so the container gets its
/// kill signal and every teardown path runs.
enum EarlyTermination {
    /// Written only by the handler (a plain sig_atomic_t store), read afterwards.
    nonisolated(unsafe) static var received: sig_atomic_t = 0

    static func install() {
        received = 0  // initializes the static before any handler can run
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in EarlyTermination.received = signal }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
    }

    /// Throws once a signal was recorded: called between the steps of preparing the root, so
    /// that a SIGTERM during a long preparation ends the run there (the session's close undoes
    /// what was done) instead of after the container has started.
    static func checkpoint() throws {
        let signal = received
        if signal != 0 { throw RootSession.Error.interrupted(signal) }
    }

    /// Raises a recorded signal again (for the forwarder installed since).
    static func replay() {
        let signal = received
        if signal != 0 { raise(signal) }
    }
}
