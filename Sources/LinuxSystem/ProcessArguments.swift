import Glibc

/// The process's command-line arguments as the kernel passed them: bytes, not Strings.
///
/// `CommandLine.arguments` (and so swift-argument-parser) decodes each argument as UTF-8 and
/// replaces an invalid byte with U+FFFD, so `run -D $'/srv/tree\xff'` would reach the verb as
/// "/srv/tree\u{FFFD}", another path that may exist. Reading the raw argv lets the CLI refuse such
/// an argument before anything parses it.
public enum ProcessArguments {
    /// argv[0...] as bytes, from `CommandLine.unsafeArgv` (the pointers main received).
    public static var raw: [[UInt8]] {
        (0..<Int(CommandLine.argc)).map { index in
            guard let pointer = CommandLine.unsafeArgv[index] else { return [] }
            return Array(UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self),
                                             count: strlen(pointer)))
        }
    }

    /// The first argument (1 = the first after the program name) that is not valid UTF-8, with
    /// its bytes; nil when all are.
    public static func firstInvalidUTF8(in arguments: [[UInt8]] = raw) -> (position: Int, bytes: [UInt8])? {
        for (index, bytes) in arguments.enumerated().dropFirst() where String(validating: bytes, as: UTF8.self) == nil {
            return (index, bytes)
        }
        return nil
    }

    /// The bytes as printable ASCII, every other byte (and the backslash) as \xHH, so that
    /// the message shows exactly what was given.
    public static func escaped(_ bytes: [UInt8]) -> String {
        var text = ""
        for byte in bytes {
            if byte >= 0x20 && byte < 0x7f && byte != 0x5c {
                text.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text
    }
}
