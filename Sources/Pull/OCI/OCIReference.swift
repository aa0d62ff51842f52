import Foundation

/// An image reference as `pull-oci` and `push-oci` take it:
/// `[https://|http://]HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`, or a short name resolved as Docker
/// Hub does (`debian` = `docker.io/library/debian:latest`, `user/app` = `docker.io/user/app`).
/// The first component is a registry host when it has a `.` or `:` or is `localhost` (the rule
/// of github.com/distribution/reference); https unless `http://` is written.
public struct OCIReference: Sendable, Equatable, CustomStringConvertible {
    /// The registry as named (`docker.io`, `127.0.0.1:5000`).
    public var registry: String
    public var repository: String
    public var tag: String?
    /// `sha256:<64 hex>`.
    public var digest: String?
    public var plainHTTP: Bool

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case invalid(String, String)
        public var description: String {
            switch self {
            case .invalid(let text, let why): "'\(text)' is not an image reference: \(why)"
            }
        }
    }

    public init(parsing text: String) throws {
        var rest = Substring(text)
        plainHTTP = false
        if rest.lowercased().hasPrefix("http://") {
            plainHTTP = true
            rest = rest.dropFirst(7)
        } else if rest.lowercased().hasPrefix("https://") {
            rest = rest.dropFirst(8)
        } else if rest.contains("://") {
            throw Error.invalid(text, "only https:// and http:// are understood")
        }
        if rest.isEmpty { throw Error.invalid(text, "it is empty") }
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            let hex = digest.hasPrefix("sha256:") ? digest.dropFirst(7) : ""
            guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw Error.invalid(text, "a digest is sha256: and 64 lower-case hex digits")
            }
            self.digest = digest
            rest = rest[..<at]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if components.contains(where: \.isEmpty) { throw Error.invalid(text, "it has an empty path component") }
        if let first = components.first, components.count > 1,
           first.contains(".") || first.contains(":") || first == "localhost" {
            registry = first
            components.removeFirst()
        } else {
            if plainHTTP || text.lowercased().hasPrefix("https://") {
                throw Error.invalid(text, "a URL needs a registry host before the repository")
            }
            registry = "docker.io"
        }
        // The tag is after the last ':' of the last component (a port has its ':' in the host).
        if var last = components.last, let colon = last.lastIndex(of: ":") {
            let tag = String(last[last.index(after: colon)...])
            guard Self.isValidTag(tag) else { throw Error.invalid(text, "'\(tag)' is not a valid tag") }
            self.tag = tag
            last = String(last[..<colon])
            components[components.count - 1] = last
        }
        if registry == "docker.io" && components.count == 1 { components.insert("library", at: 0) }
        repository = components.joined(separator: "/")
        guard components.allSatisfy(Self.isValidComponent) else {
            throw Error.invalid(text, "repository names are lower-case letters, digits and . _ - separators")
        }
        guard Self.isValidHost(registry) else { throw Error.invalid(text, "'\(registry)' is not a registry host") }
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// The host libcurl talks to: Docker Hub's API lives at registry-1.docker.io.
    public var apiHost: String { registry == "docker.io" || registry == "index.docker.io" ? "registry-1.docker.io" : registry }

    public var baseURL: String { "\(plainHTTP ? "http" : "https")://\(apiHost)/v2/\(repository)" }

    /// What the manifest is asked for by: the digest when there is one, else the tag.
    public var manifestReference: String { digest ?? tag ?? "latest" }

    /// The canonical form: `registry/repository[:tag][@digest]`.
    public var description: String {
        var text = "\(registry)/\(repository)"
        if let tag { text += ":\(tag)" }
        if let digest { text += "@\(digest)" }
        return text
    }

    /// The local image name a pull gives by default: the last repository component.
    public var defaultImageName: String { String(repository.split(separator: "/").last ?? Substring(repository)) }

    static func isValidTag(_ tag: String) -> Bool {
        guard let first = tag.first, tag.count <= 128, first.isLetter || first.isNumber || first == "_" else { return false }
        return tag.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    static func isValidComponent(_ component: String) -> Bool {
        guard let first = component.first, let last = component.last,
              first.isASCII && (first.isLowercase || first.isNumber), last.isASCII && (last.isLowercase || last.isNumber) else { return false }
        return component.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }
    }

    static func isValidHost(_ host: String) -> Bool {
        !host.isEmpty && host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }
    }
}
