/// A compressed stream that could not be decoded. One type for every decoder (xz, gzip, zstd), so
/// that their messages read alike and name the format.
package struct DecompressionError: Swift.Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The library rejected the data (bad header, CRC mismatch, ...); the text says why.
        case corrupt(String)
        /// The input ended before the stream did.
        case truncated
        /// The decoder could not be started (out of memory, library error).
        case setup(String)
    }

    /// "xz", "gzip", "zstd".
    public var format: String
    public var kind: Kind

    public init(format: String, kind: Kind) {
        self.format = format
        self.kind = kind
    }

    public var description: String {
        switch kind {
        case .corrupt(let why): "\(format) stream is corrupt: \(why)"
        case .truncated: "\(format) stream ends early (truncated input)"
        case .setup(let why): "cannot start the \(format) decoder: \(why)"
        }
    }
}
