import Foundation
import ImageStore
import LinuxSystem

/// An error the CLI reports itself, with the exit status it maps to.
struct CommandFailure: Error {
    var message: String
    var status: Int32 = 1

    /// Exit status for an error thrown by the libraries: 16 for a busy image, 2 for an invalid
    /// image name (a bad argument, whichever verb found it), else 1.
    static func status(for error: Error) -> Int32 {
        if let busy = error as? BusyReporting, busy.isBusy { return 16 }
        if error is ImageName.Error { return 2 }
        if let usage = error as? UsageReporting, usage.isUsageError { return 2 }
        return 1
    }
}

/// Errors that can say the image was busy (locked), so the CLI exits 16 as documented.
protocol BusyReporting { var isBusy: Bool { get } }

/// Writes to the standard streams through FileHandle: the C `stderr`/`stdout` globals are not
/// concurrency-safe in Swift 6.
enum Terminal {
    static func standardError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
    static func standardOutput(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
    /// True when standard output is a terminal (tables get headers and colour only then).
    static var outputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    static var errorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

extension CommandFailure: CustomStringConvertible {
    var description: String { message }
}
