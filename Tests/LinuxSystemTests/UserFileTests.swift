import Foundation
import Glibc
import LinuxSystem
import Testing
import TestSupport

/// UserFile: opening a user-given path never blocks, and the type is judged on the descriptor.
@Suite struct UserFileTests {
    /// Runs `body` on a thread of its own and reports whether it finished within `seconds`: a
    /// blocking open of a FIFO (the bug) must fail the test, not hang it. A thread left blocked
    /// is freed by opening the FIFO's write end.
    static func finishes(within seconds: Double, unblocking fifo: String? = nil, _ body: @escaping @Sendable () -> Void) -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread { body(); done.signal() }.start()
        if done.wait(timeout: .now() + seconds) == .success { return true }
        if let fifo {
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
            _ = done.wait(timeout: .now() + 5)
        }
        return false
    }

    @Test func fifoIsRefusedWithoutBlocking() throws {
        let tmp = try TemporaryDirectory()
        let fifo = tmp.appending("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let finished = Self.finishes(within: 1, unblocking: fifo) {
            do {
                _ = try UserFile.open(fifo, accepting: .image)
                Issue.record("a FIFO was accepted as an image")
            } catch let error as UserFile.Error {
                #expect(error == .wrongType(path: fifo, found: .fifo, accepted: .image))
                #expect(error.description == "\(fifo) is a FIFO, not a regular file or block device")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        #expect(finished, "opening a FIFO blocked")
    }

    @Test func socketAndCharacterDeviceAreRefused() throws {
        let tmp = try TemporaryDirectory()
        let socketPath = tmp.appending("sock")
        let r = try Tool.run("python3", ["-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", socketPath])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(throws: UserFile.Error.wrongType(path: socketPath, found: .socket, accepted: .image)) {
            try UserFile.open(socketPath, accepting: .image)
        }
        #expect(throws: UserFile.Error.wrongType(path: "/dev/zero", found: .characterDevice, accepted: [.regular])) {
            try UserFile.check("/dev/zero", accepting: [.regular])
        }
    }

    @Test func regularFileOpensBlockingAndDirectoryOnlyWhenAccepted() throws {
        let tmp = try TemporaryDirectory()
        let file = tmp.appending("file")
        try "data".write(toFile: file, atomically: false, encoding: .utf8)
        let (descriptor, status) = try UserFile.open(file, accepting: .image)
        defer { try? descriptor.close() }
        #expect(status.kind == .regular && status.size == 4)
        // O_NONBLOCK was cleared again: reads block as usual.
        #expect(fcntl(descriptor.rawValue, F_GETFL) & O_NONBLOCK == 0)
        #expect(throws: UserFile.Error.self) { try UserFile.check(tmp.path, accepting: .image) }
        #expect(try UserFile.check(tmp.path, accepting: [.regular, .directory]).kind == .directory)
    }

    @Test func readSmallTextFileRefusesAFIFO() throws {
        let tmp = try TemporaryDirectory()
        let fifo = tmp.appending("side.roothash")
        #expect(mkfifo(fifo, 0o600) == 0)
        let finished = Self.finishes(within: 1, unblocking: fifo) {
            #expect(throws: SystemCallError.self) { try readSmallTextFile(fifo) }
        }
        #expect(finished, "reading a FIFO blocked")
    }
}
