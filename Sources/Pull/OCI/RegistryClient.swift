import Foundation
import ImageStore

/// Why an OCI pull or push failed, beyond the transfer errors PullError already words.
public enum OCIError: Swift.Error, CustomStringConvertible, Sendable {
    case unsupportedMediaType(String, what: String)
    case noPlatform(String, available: [String])
    case digestMismatch(what: String, expected: String, actual: String)
    case sizeMismatch(what: String, expected: Int64, actual: UInt64)
    case badDocument(what: String, detail: String)
    case badDigest(String)
    case diffIDMismatch(layer: String, expected: String, actual: String)
    case badChallenge(String)
    case noToken(String)
    case uploadRefused(String, status: Int)
    case notATree(String)

    public var description: String {
        switch self {
        case .unsupportedMediaType(let type, let what): "\(what) has the unsupported media type '\(type)'"
        case .noPlatform(let wanted, let available):
            "the image index has no manifest for \(wanted) (it has: \(available.isEmpty ? "none with a platform" : available.joined(separator: ", "))); choose one with --platform="
        case .digestMismatch(let what, let expected, let actual): "\(what) does not match its digest: expected \(expected), got \(actual)"
        case .sizeMismatch(let what, let expected, let actual): "\(what) has \(actual) bytes, its descriptor says \(expected)"
        case .badDocument(let what, let detail): "\(what) is not valid: \(detail)"
        case .badDigest(let digest): "'\(digest)' is not a sha256 digest"
        case .diffIDMismatch(let layer, let expected, let actual): "layer \(layer) unpacks to \(actual), but the image config says \(expected)"
        case .badChallenge(let text): "cannot use the registry's authentication challenge: \(text)"
        case .noToken(let url): "\(url): the token service answered without a token"
        case .uploadRefused(let url, let status): "\(url): the registry refused the upload (HTTP \(status))"
        case .notATree(let name): "image '\(name)' is not a directory tree; push-oci pushes directory and subvolume images"
        }
    }
}

/// One repository of one registry over the distribution API v2, with its authentication:
/// anonymous bearer tokens from the `WWW-Authenticate` challenge (with the user's credentials
/// when the containers auth file has some for the registry), or basic auth where asked.
final class RegistryClient: @unchecked Sendable {
    // Used by one pull or push; the token is set before the parallel blob downloads start and
    // read under `lock` anyway.
    let reference: OCIReference
    let job: ImportJobProbe
    let backoff: [Double]
    let scope: String
    private let credentials: String?
    private let lock = NSLock()
    private var authorizationValue: String?

    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    init(reference: OCIReference, push: Bool, job: ImportJobProbe, backoff: [Double]) {
        self.reference = reference
        self.job = job
        self.backoff = backoff
        scope = "repository:\(reference.repository):\(push ? "pull,push" : "pull")"
        credentials = RegistryCredentials.lookup(registry: reference.registry, repository: reference.repository)
    }

    /// The Authorization header for the blob downloads (after a first authenticated request).
    var authorizationHeaders: [String] {
        lock.withLock { authorizationValue.map { ["Authorization: \($0)"] } ?? [] }
    }

    /// A request whose answer is small (manifests, configs, errors, upload sessions): the body
    /// is kept in memory, capped at `limit`. A 401 is answered once by authenticating as the
    /// challenge asks; transient failures and 429/5xx are retried with back-off.
    func request(_ url: String, method: CurlTransfer.Method = .get, headers: [String] = [], limit: UInt64 = 4 << 20,
                 what: String, upload: UploadBody? = nil) throws -> Response {
        var authenticated = false
        var attempt = 0
        while true {
            let request = CurlTransfer(url: url)
            request.method = method
            request.headers = headers + authorizationHeaders
            request.maximumSize = limit
            var body: [UInt8] = []
            var responseError: PullError? = nil
            request.onData = { data in
                if UInt64(body.count + data.count) > limit {
                    responseError = .tooLarge("\(what) \(url)", limit: limit)
                    return false
                }
                body.append(contentsOf: data)
                return true
            }
            if let upload {
                try upload.rewind()
                request.uploadSize = upload.size
                request.onUpload = { buffer in upload.read(into: buffer) }
            }
            request.onProgress = { [job] _, _ in !job.isCancelled }
            var failure: CurlTransfer.Failure? = nil
            do { try request.perform() } catch let error as CurlTransfer.Failure { failure = error }
            if job.isCancelled { throw PullError.interrupted }
            if let responseError { throw responseError }
            if let failure {
                if let error = PullError.final(failure, url: url, what: what, limit: limit) { throw error }
                if failure.isTransient && attempt < backoff.count {
                    Thread.sleep(forTimeInterval: backoff[attempt])
                    attempt += 1
                    continue
                }
                throw PullError.transfer(url, detail: failure.message)
            }
            let response = Response(status: request.response.status, headers: request.response.headers, body: body)
            if response.status == 401, !authenticated, let challenge = response.headers["www-authenticate"] {
                try authenticate(challenge)
                authenticated = true
                continue
            }
            if [429, 500, 502, 503, 504].contains(response.status), attempt < backoff.count {
                Thread.sleep(forTimeInterval: backoff[attempt])
                attempt += 1
                continue
            }
            return response
        }
    }

    /// A request that must answer 2xx: anything else becomes the PullError for it.
    func expectSuccess(_ response: Response, url: String) throws {
        switch response.status {
        case 200..<300: return
        case 404, 410: throw PullError.notFound(url)
        case 401, 403: throw PullError.unauthorized(url, status: response.status)
        default: throw PullError.httpStatus(url, status: response.status)
        }
    }

    /// Answers a `WWW-Authenticate` challenge: Bearer gets a token from the realm (with the
    /// user's credentials when there are some), Basic uses the credentials.
    private func authenticate(_ challenge: String) throws {
        let (scheme, parameters) = Self.parseChallenge(challenge)
        switch scheme.lowercased() {
        case "basic":
            guard let credentials else { throw PullError.unauthorized(reference.baseURL, status: 401) }
            lock.withLock { authorizationValue = "Basic \(credentials)" }
        case "bearer":
            guard let realm = parameters["realm"], var components = URLComponents(string: realm),
                  let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http" else {
                throw OCIError.badChallenge(challenge)
            }
            var items = components.queryItems ?? []
            if let service = parameters["service"] { items.append(URLQueryItem(name: "service", value: service)) }
            items.append(URLQueryItem(name: "scope", value: parameters["scope"] ?? scope))
            components.queryItems = items
            guard let url = components.string else { throw OCIError.badChallenge(challenge) }
            let request = CurlTransfer(url: url)
            if let credentials { request.headers = ["Authorization: Basic \(credentials)"] }
            request.maximumSize = 1 << 20
            var body: [UInt8] = []
            request.onData = { data in
                guard body.count + data.count <= 1 << 20 else { return false }
                body.append(contentsOf: data)
                return true
            }
            do { try request.perform() } catch let failure as CurlTransfer.Failure {
                if failure.isTLSVerification { throw PullError.tlsVerification(url, detail: failure.message) }
                throw PullError.transfer(url, detail: failure.message)
            }
            guard request.response.status == 200 else { throw PullError.unauthorized(url, status: request.response.status) }
            struct Token: Decodable {
                var token: String?
                var access_token: String?
            }
            guard let decoded = try? JSONDecoder().decode(Token.self, from: Data(body)),
                  let token = decoded.token ?? decoded.access_token, !token.isEmpty,
                  !token.contains(where: { $0.isNewline }) else { throw OCIError.noToken(url) }
            lock.withLock { authorizationValue = "Bearer \(token)" }
        default:
            throw OCIError.badChallenge(challenge)
        }
    }

    /// `Bearer realm="...",service="...",scope="..."` -> ("Bearer", parameters).
    static func parseChallenge(_ text: String) -> (String, [String: String]) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else { return (trimmed, [:]) }
        let scheme = String(trimmed[..<space])
        var parameters: [String: String] = [:]
        var rest = Substring(trimmed[trimmed.index(after: space)...])
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "\\", let next = rest.first {
                        value.append(next)
                        rest = rest.dropFirst()
                    } else if c == "\"" {
                        break
                    } else {
                        value.append(c)
                    }
                }
            } else {
                value = String(rest.prefix { $0 != "," })
                rest = rest.dropFirst(value.count)
            }
            parameters[key] = value
        }
        return (scheme, parameters)
    }
}

/// A request body read from a file (a layer blob) or memory (manifests, configs).
final class UploadBody: @unchecked Sendable {
    // Used by one transfer at a time.
    private let file: PartialFile?
    private let bytes: [UInt8]
    private var offset: UInt64 = 0
    let size: UInt64

    init(path: String) throws {
        let file = try PartialFile(path: path)
        self.file = file
        bytes = []
        size = try file.size()
    }

    init(bytes: [UInt8]) {
        file = nil
        self.bytes = bytes
        size = UInt64(bytes.count)
    }

    func rewind() throws { offset = 0 }

    /// The next bytes into `buffer`; 0 at the end, -1 on a read error.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = Int(min(UInt64(buffer.count), size - offset))
        if count == 0 { return 0 }
        if let file {
            var chunk = [UInt8](repeating: 0, count: count)
            guard let n = try? file.read(into: &chunk, count: count, at: offset), n > 0 else { return -1 }
            buffer.copyBytes(from: chunk[0..<n])
            offset += UInt64(n)
            return n
        }
        buffer.copyBytes(from: bytes[Int(offset)..<(Int(offset) + count)])
        offset += UInt64(count)
        return count
    }
}

/// Registry credentials from the files podman and docker keep them in (the first that has an
/// entry for the registry wins): `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `~/.docker/config.json`. Only inline `auth` entries (base64 of `user:password`) are used;
/// credential helpers are not run.
enum RegistryCredentials {
    static func lookup(registry: String, repository: String,
                       environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        var files: [String] = []
        if let file = environment["REGISTRY_AUTH_FILE"], !file.isEmpty { files.append(file) }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { files.append(runtime + "/containers/auth.json") }
        if let home = environment["HOME"], !home.isEmpty { files.append(home + "/.docker/config.json") }
        // Most specific first: podman allows keys per repository (and its namespaces).
        var keys: [String] = []
        var path = "\(registry)/\(repository)"
        while path.contains("/") {
            keys.append(path)
            path = String(path[..<path.lastIndex(of: "/")!])
        }
        keys.append(registry)
        if registry == "docker.io" { keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"] }
        keys += ["https://\(registry)", "http://\(registry)"]
        struct AuthFile: Decodable {
            struct Entry: Decodable { var auth: String? }
            var auths: [String: Entry]?
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file), data.count < 1 << 20,
                  let parsed = try? JSONDecoder().decode(AuthFile.self, from: data), let auths = parsed.auths else { continue }
            for key in keys {
                if let auth = auths[key]?.auth, !auth.isEmpty, let decoded = Data(base64Encoded: auth),
                   String(decoding: decoded, as: UTF8.self).contains(":") {
                    return auth
                }
            }
        }
        return nil
    }
}
