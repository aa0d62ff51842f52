import Glibc
import SystemPackage

/// A failed system call, naming the call, the errno and (when there is one) the path it was about.
/// Every wrapper in LinuxSystem throws this, so a message always says which step failed.
public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    public let call: String
    public let errno: Errno
    public let path: String?

    public init(_ call: String, errno: Errno, path: String? = nil) {
        self.call = call
        self.errno = errno
        self.path = path
    }

    /// Builds the error from the calling thread's current errno.
    public static func current(_ call: String, path: String? = nil) -> SystemCallError {
        SystemCallError(call, errno: Errno(rawValue: Glibc.errno), path: path)
    }

    public var description: String {
        let what = String(cString: strerror(errno.rawValue))
        if let path { return "\(call)(\(path)): \(what)" }
        return "\(call): \(what)"
    }
}

/// Retries a call interrupted by a signal, throwing `SystemCallError` on any other failure.
///
/// Callers: do not wrap a lone call in `do { ... } catch let e as SystemCallError where ... {}`.
/// With typed throws, Swift 6.3.1 never finishes compiling that pattern (it hung the build of a
/// whole module here). Write `do { ... } catch { guard error.errno == ... else { throw error } }`.
@discardableResult
public func systemCall<T: BinaryInteger>(
    _ name: String, path: String? = nil, _ body: () -> T
) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemCallError(name, errno: Errno(rawValue: code), path: path)
    }
}
