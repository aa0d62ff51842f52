import Glibc

/// Address text through inet_pton(3)/inet_ntop(3): IPv6 text has enough forms (::, embedded
/// IPv4, zero compression) that the C library's parser is the one to trust.
enum AddressText {
    enum Family { case v4, v6 }

    static func parse(_ text: String, family: Family) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let af = family == .v4 ? AF_INET : AF_INET6
        guard inet_pton(af, text, &buffer) == 1 else { return nil }
        return family == .v4 ? Array(buffer[0..<4]) : buffer
    }

    static func format(_ bytes: [UInt8]) -> String {
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = bytes.withUnsafeBytes { inet_ntop(AF_INET6, $0.baseAddress, &out, socklen_t(out.count)) != nil }
        return ok ? String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
}

enum ErrorText {
    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }
}
