import Foundation
import Testing
@testable import Pull

@Suite("pull-oci: references, challenges, credentials")
struct OCIReferenceTests {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    @Test("Docker Hub short names resolve as docker does; the API host is registry-1.docker.io")
    func dockerHub() throws {
        let debian = try OCIReference(parsing: "debian")
        #expect(debian.description == "docker.io/library/debian:latest")
        #expect(debian.baseURL == "https://registry-1.docker.io/v2/library/debian")
        #expect(debian.defaultImageName == "debian")
        let tagged = try OCIReference(parsing: "debian:bookworm-slim")
        #expect(tagged.repository == "library/debian" && tagged.tag == "bookworm-slim")
        let user = try OCIReference(parsing: "someone/app:1.2")
        #expect(user.registry == "docker.io" && user.repository == "someone/app" && user.tag == "1.2")
        #expect(try OCIReference(parsing: "docker.io/library/debian").description == "docker.io/library/debian:latest")
        #expect(try OCIReference(parsing: "docker.io/debian").repository == "library/debian")
    }

    @Test("hosts, ports, digests and the scheme")
    func hosts() throws {
        let local = try OCIReference(parsing: "http://127.0.0.1:5000/test/busybox:v2")
        #expect(local.plainHTTP && local.registry == "127.0.0.1:5000" && local.repository == "test/busybox" && local.tag == "v2")
        #expect(local.baseURL == "http://127.0.0.1:5000/v2/test/busybox")
        let quay = try OCIReference(parsing: "quay.io/org/image@\(Self.digest)")
        #expect(!quay.plainHTTP && quay.tag == nil && quay.digest == Self.digest && quay.manifestReference == Self.digest)
        #expect(quay.baseURL == "https://quay.io/v2/org/image")
        let both = try OCIReference(parsing: "https://localhost:5000/a:t@\(Self.digest)")
        #expect(both.registry == "localhost:5000" && both.tag == "t" && both.manifestReference == Self.digest)
        // "localhost" without a port is a host too; a single component without dots is a Hub name.
        #expect(try OCIReference(parsing: "localhost/x").registry == "localhost")
        #expect(try OCIReference(parsing: "ubuntu/x").registry == "docker.io")
    }

    @Test("malformed references are refused with the reason")
    func refusals() {
        for bad in ["", "Debian", "http://debian", "ftp://host/x", "host.io//x", "host.io/x:", "host.io/x:-bad",
                    "host.io/x@sha256:abc", "host.io/x@md5:" + String(repeating: "a", count: 32), "host.io/x y"] {
            #expect(throws: OCIReference.Error.self, "\(bad)") { try OCIReference(parsing: bad) }
        }
    }

    @Test("WWW-Authenticate challenges are parsed with quoted values")
    func challenges() {
        let (scheme, parameters) = RegistryClient.parseChallenge(
            #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#)
        #expect(scheme == "Bearer")
        #expect(parameters["realm"] == "https://auth.docker.io/token")
        #expect(parameters["service"] == "registry.docker.io")
        #expect(parameters["scope"] == "repository:library/debian:pull")
        let basic = RegistryClient.parseChallenge(#"Basic realm="basic-realm""#)
        #expect(basic.0 == "Basic" && basic.1["realm"] == "basic-realm")
    }

    @Test("credentials come from the auth files, most specific entry first, docker.io by its old names")
    func credentials() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imagectl-auth-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("containers"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".docker"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = Data("a:1".utf8).base64EncodedString()
        let b = Data("b:2".utf8).base64EncodedString()
        let c = Data("c:3".utf8).base64EncodedString()
        try #"{"auths":{"quay.io":{"auth":"\#(a)"},"quay.io/org/special":{"auth":"\#(b)"}}}"#
            .write(to: dir.appendingPathComponent("containers/auth.json"), atomically: true, encoding: .utf8)
        try #"{"auths":{"https://index.docker.io/v1/":{"auth":"\#(c)"}}}"#
            .write(to: dir.appendingPathComponent(".docker/config.json"), atomically: true, encoding: .utf8)
        let environment = ["XDG_RUNTIME_DIR": dir.path, "HOME": dir.path]
        #expect(RegistryCredentials.lookup(registry: "quay.io", repository: "org/other", environment: environment) == a)
        #expect(RegistryCredentials.lookup(registry: "quay.io", repository: "org/special", environment: environment) == b)
        #expect(RegistryCredentials.lookup(registry: "docker.io", repository: "library/debian", environment: environment) == c)
        #expect(RegistryCredentials.lookup(registry: "ghcr.io", repository: "x/y", environment: environment) == nil)
    }
}
