import SwiftASN1

/// Refuses DER that holds a certificate time swift-certificates cannot turn into a date.
///
/// swift-asn1 accepts a UTCTime or GeneralizedTime with 61 seconds (its validation allows two
/// leap seconds), but swift-certificates 1.21.1 asserts `seconds < 61` when it converts a time to
/// a `Date` (`Int64(timestampFromUTCDate:)`), which it does while checking or describing a
/// certificate. In a debug build that assert traps, so a signature partition with such a time
/// in its certificate would crash imagectl (the verity-cms fuzz target found it). A release build
/// skips the assert and computes a date one second on, which is harmless, but input must never
/// trap any build: the DER is walked once before it reaches swift-certificates, and a time of 61
/// seconds makes the signature invalid. Real certificates never carry one (RFC 5280 requires
/// seconds without leap seconds, 00-59).
enum CertificateTimeGuard {
    /// The first time in `der` that swift-certificates cannot convert, as written, or nil.
    static func unconvertibleTime(in der: [UInt8]) -> String? {
        guard let root = try? DER.parse(der) else { return nil }  // CMS refuses what does not parse
        return unconvertibleTime(in: root, depth: 0)
    }

    private static func unconvertibleTime(in node: ASN1Node, depth: Int) -> String? {
        // DER.parse already bounds nesting; the depth check keeps this walk bounded on its own.
        guard depth < 64 else { return nil }
        switch node.content {
        case .constructed(let children):
            for child in children {
                if let found = unconvertibleTime(in: child, depth: depth + 1) { return found }
            }
            return nil
        case .primitive(let bytes):
            let seconds: Int
            if node.identifier == .generalizedTime, let time = try? GeneralizedTime(derEncoded: node) {
                seconds = time.seconds
            } else if node.identifier == .utcTime, let time = try? UTCTime(derEncoded: node) {
                seconds = time.seconds
            } else {
                return nil
            }
            return seconds > 60 ? String(decoding: bytes, as: UTF8.self) : nil
        }
    }
}
