import Glibc
import LinuxSystem
import SystemPackage
import Testing

@Suite struct SystemCallErrorTests {
    @Test func namesCallPathAndReason() throws {
        #expect(throws: SystemCallError.self) {
            try systemCall("open", path: "/nonexistent/x") { open("/nonexistent/x", O_RDONLY) }
        }
        do {
            try systemCall("open", path: "/nonexistent/x") { open("/nonexistent/x", O_RDONLY) }
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.description == "open(/nonexistent/x): No such file or directory")
        }
    }
}
