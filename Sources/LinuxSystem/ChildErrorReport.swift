import CShims
import Glibc

/// What a child started by one of the C shims (container.c, enter.c, spawn.c) says on its error
/// pipe: nothing (EOF) once it has exec'd its payload, or one `img_container_error` naming the
/// step that failed. Shared by the container runner and the VM runner's virtiofsd start.
public struct ChildErrorReport: Sendable {
    /// The failed step as the child named it.
    public var step: String
    public var errorNumber: Int32
    /// False when the pipe closed before a whole report arrived (the child died writing it).
    public var complete: Bool

    /// Reads the pipe until EOF or a whole report; nil on EOF without a byte (exec'd).
    public static func read(from errorFD: Int32) -> ChildErrorReport? {
        var report = img_container_error()
        let expected = MemoryLayout<img_container_error>.size
        var got = 0
        withUnsafeMutableBytes(of: &report) { raw in
            while got < expected {
                let n = Glibc.read(errorFD, raw.baseAddress! + got, expected - got)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                got += n
            }
        }
        guard got > 0 else { return nil }
        let step = withUnsafeBytes(of: report.step) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return ChildErrorReport(step: step, errorNumber: report.error_number, complete: got == expected)
    }
}
