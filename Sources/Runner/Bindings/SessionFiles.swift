import Glibc
import SystemPackage

/// The few raw calls `RootSession` needs: mkdtemp(3), mkdirat(2) relative to a held directory.
enum SessionFiles {
    /// mkdtemp(3) of `prefix` + "XXXXXX"; returns the directory made, or the strerror text.
    static func makeTemporaryDirectory(prefix: String) -> Result<String, RootSession.Error> {
        var template = Array((prefix + "XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!) }
        guard made != nil else { return .failure(.temporary("a temporary directory \(prefix)XXXXXX", String(cString: strerror(errno)))) }
        return .success(String(cString: template))
    }

    /// mkdirat(2) of `name` in the directory behind `parent`.
    static func makeDirectory(in parent: FileDescriptor, name: String, mode: mode_t, what: String) throws(RootSession.Error) {
        if mkdirat(parent.rawValue, name, mode) != 0 { throw .temporary(what, String(cString: strerror(errno))) }
    }
}
