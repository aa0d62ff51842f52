import Foundation
import Testing
@testable import Runner

/// sd_notify messages from the container and what imagectl passes on to its service manager.
@Suite("run readiness")
struct ReadinessTests {
    @Test func parsesTheAssignmentsThatMatter() {
        #expect(NotifyMessage(parsing: "READY=1") == NotifyMessage(ready: true))
        #expect(NotifyMessage(parsing: "READY=1\nSTATUS=Started") == NotifyMessage(ready: true, status: "Started"))
        // nspawn splits on \r too; the last STATUS= wins; other assignments are ignored.
        #expect(NotifyMessage(parsing: "STATUS=a\r\nMAINPID=5\r\nSTATUS=b\rSTOPPING=1") == NotifyMessage(stopping: true, status: "b"))
        // READY must be exactly 1; an empty STATUS= is a status.
        #expect(NotifyMessage(parsing: "READY=0\nREADY=yes").isEmpty)
        #expect(NotifyMessage(parsing: "STATUS=") == NotifyMessage(status: ""))
        #expect(NotifyMessage(parsing: "").isEmpty)
    }

    @Test func notifyReadyNoIsReadyAtTheStart() {
        let policy = ReadinessPolicy(notifyReady: false)
        #expect(policy.startMessage == "READY=1\nSTATUS=Container running.")
        // READY=1 went out already; a status still comes through, prefixed as nspawn does.
        #expect(policy.forward(NotifyMessage(ready: true)) == nil)
        #expect(policy.forward(NotifyMessage(ready: true, status: "up")) == "STATUS=Container running: up")
    }

    @Test func notifyReadyYesWaitsForThePayload() {
        let policy = ReadinessPolicy(notifyReady: true)
        #expect(policy.startMessage == "STATUS=Container running.")
        #expect(policy.forward(NotifyMessage(ready: true, status: "up")) == "READY=1\nSTATUS=Container running: up")
        #expect(policy.forward(NotifyMessage(stopping: true)) == "STOPPING=1")
        // A status cannot smuggle another assignment into the upward message.
        #expect(policy.forward(NotifyMessage(status: "a\nREADY=1")) == "STATUS=Container running: a READY=1")
        #expect(policy.forward(NotifyMessage()) == nil)
    }

    @Test func serviceNotifierReadsNotifySocket() {
        #expect(ServiceNotifier(environment: [:]).address == nil)
        #expect(ServiceNotifier(environment: ["NOTIFY_SOCKET": ""]).address == nil)
        #expect(ServiceNotifier(environment: ["NOTIFY_SOCKET": "@abc"]).address == "@abc")
        // Nothing to send to: a no-op that says so.
        #expect(ServiceNotifier(environment: [:]).send("READY=1") == false)
        // An address kind imagectl does not speak (systemd's vsock:) is not sent to.
        #expect(ServiceNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:1234"]).send("READY=1") == false)
    }
}

/// Which names a later run may take for a killed run's leftovers.
@Suite("run leftovers")
struct LeftoversTests {
    @Test func onlyClaimedShapesAreCandidates() {
        #expect(Leftovers.isClaimedShape(".#tree.0123456789abcdef", prefix: ".#tree."))
        #expect(Leftovers.isClaimedShape("imagectl-bind-0123456789abcdef", prefix: "imagectl-bind-"))
        // mkdtemp's six characters (older runs), upper case, another image's snapshot, the lock.
        #expect(!Leftovers.isClaimedShape("imagectl-bind-a1B2c3", prefix: "imagectl-bind-"))
        #expect(!Leftovers.isClaimedShape(".#tree.0123456789ABCDEF", prefix: ".#tree."))
        #expect(!Leftovers.isClaimedShape(".#tree2.0123456789abcdef", prefix: ".#tree."))
        #expect(!Leftovers.isClaimedShape(".#tree.lck", prefix: ".#tree."))
        #expect(!Leftovers.isClaimedShape(".#tree.0123456789abcdef0", prefix: ".#tree."))
    }
}
