import Foundation
import Testing
import TestSupport

/// pull-oci as a user runs it, against Debian's docker-registry on 127.0.0.1 (images put there
/// with skopeo from layouts umoci built from the busybox fixture) and, for what no honest
/// registry serves, fixtures/test-http-server.py laid out as a registry.
@Suite("pull-oci CLI", .serialized)
struct OCIPullCLITests {
    typealias Failure = PullCLITests.Failure
    static let repository = "test/busybox"

    static func requirements() throws {
        try Privileged.require(.root, .tool("docker-registry"), .tool("skopeo"), .tool("umoci"), .fixture("busybox-tree"))
    }

    /// The layouts and the registry, made once for the suite.
    final class World: @unchecked Sendable {
        // Immutable after init.
        let dir: TemporaryDirectory
        let layout: OCILayout
        let registry: LocalRegistry
        let victim: String

        init() throws {
            dir = try TemporaryDirectory(prefix: "imagectl-oci")
            let scratch = dir.appending("scratch")
            try PullCLITests.sh("mkdir -p \(scratch)/opaque && echo fresh > \(scratch)/opaque/fresh")
            guard let busybox = Fixtures.path("busybox-tree") else { throw Failure(text: "busybox-tree missing") }
            layout = try OCILayout(path: dir.appending("layout"))
            try layout.newImage("base", from: busybox, scratch: scratch)
            // A deleted file, a deleted directory, a changed file, new files and a symlink...
            try layout.addLayer(to: "base", as: "changed", scratch: scratch, change:
                "rm etc/hostname && rm -r special/sticky-dir && echo changed > srv/marker && mkdir -p opt/app && echo app > opt/app/run && ln -s run opt/app/link && chown 1000:1000 opt/app/run && chmod 0640 opt/app/run")
            // ...then an opaque directory: usr/share/imagectl holds only what this layer puts there.
            try layout.insert(into: "changed", as: "multi", source: "\(scratch)/opaque", target: "/usr/share/imagectl", opaque: true)
            try layout.configure("multi", [
                "--tag=configured", "--config.entrypoint=/bin/sh", "--config.entrypoint=-c",
                "--config.entrypoint=echo \"$0 $(/bin/busybox id -u):$(/bin/busybox id -g) $(pwd) $FOO\"",
                "--config.cmd=from-cmd", "--config.env=FOO=bar", "--config.workingdir=/srv", "--config.user=1000",
                "--config.exposedports=8080/tcp", "--config.label=org.example=yes",
            ])
            try layout.addLayer(to: "base", as: "other", scratch: scratch, change: "echo other > srv/other")
            // Hostile layers, added verbatim.
            victim = dir.appending("victim")
            try PullCLITests.sh("mkdir -p \(victim) && echo keep > \(victim)/file")
            try Self.tar(dir.appending("dotdot.tar"), [("../escaped", "file", "x")])
            try Self.tar(dir.appending("absolute.tar"), [("/escaped", "file", "x")])
            try Self.tar(dir.appending("symlink.tar"), [("escape", "symlink", victim)])
            try Self.tar(dir.appending("through.tar"), [("escape/.wh.file", "file", "")])
            try Self.tar(dir.appending("whiteout-up.tar"), [("etc/../../.wh.victim", "file", "")])
            try layout.addRawLayer(to: "base", as: "dotdot", layer: dir.appending("dotdot.tar"))
            try layout.addRawLayer(to: "base", as: "absolute", layer: dir.appending("absolute.tar"))
            try layout.addRawLayer(to: "base", as: "symlink", layer: dir.appending("symlink.tar"))
            try layout.addRawLayer(to: "symlink", as: "through", layer: dir.appending("through.tar"))
            try layout.addRawLayer(to: "base", as: "whiteout-up", layer: dir.appending("whiteout-up.tar"))
            registry = try LocalRegistry()
            for tag in ["multi", "configured", "other", "dotdot", "absolute", "through", "whiteout-up"] {
                try registry.push(layout: layout.path, tag: tag, repository: OCIPullCLITests.repository)
            }
        }

        /// An uncompressed tar of (path, kind, content or link target) entries, paths as given.
        static func tar(_ path: String, _ entries: [(String, String, String)]) throws {
            let list = entries.map { "(\"\($0.0)\", \"\($0.1)\", \"\($0.2)\")" }.joined(separator: ", ")
            try PullCLITests.sh("""
                python3 -c 'import io, tarfile
                with tarfile.open("\(path)", "w", format=tarfile.PAX_FORMAT) as t:
                    for name, kind, value in [\(list)]:
                        info = tarfile.TarInfo(name)
                        if kind == "symlink":
                            info.type = tarfile.SYMTYPE
                            info.linkname = value
                            t.addfile(info)
                        else:
                            data = value.encode()
                            info.size = len(data)
                            t.addfile(info, io.BytesIO(data))
                '
                """)
        }

        static let shared: Result<World, Error> = Result { try World() }
    }

    static func world() throws -> World {
        try requirements()
        return try World.shared.get()
    }

    /// A fresh pool.
    final class Pool: @unchecked Sendable {
        let dir: TemporaryDirectory
        var path: String { dir.appending("pool") }
        init() throws {
            dir = try TemporaryDirectory(prefix: "imagectl-oci-pool")
            try FileManager.default.createDirectory(atPath: dir.appending("pool"), withIntermediateDirectories: true)
        }
        /// Entries of the pool other than the layer cache.
        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0 != ".oci-layers" }.sorted()
        }
        func cached() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: path + "/.oci-layers")) ?? []).filter { $0 != ".lock" }.sorted()
        }
    }

    /// Paths, types, modes, owners, sizes (not of directories: their size depends on the file
    /// system's history), link targets, and the contents of every file.
    static func listing(_ root: String) throws -> String {
        try PullCLITests.sh("""
            cd \(root) && find . -mindepth 1 \\( -type d -printf '%p d %m %U %G\\n' \\) -o -printf '%p %y %m %U %G %s %l\\n' | sort \
            && find . -type f -print0 | sort -z | xargs -0 -r sha256sum
            """)
    }

    static func pull(_ reference: String, _ name: String, _ pool: Pool, _ extra: [String] = []) throws -> Tool.Result {
        try Imagectl.run(["pull-oci"] + extra + [reference, name], root: pool.path)
    }

    static func expectRefused(_ result: Tool.Result, _ text: String, name: String, pool: Pool,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        PullCLITests.expectOneErrorLine(result, containing: text, sourceLocation: sourceLocation)
        #expect(pool.leftovers().isEmpty, "left in the pool: \(pool.leftovers())", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: pool.path + "/" + name), sourceLocation: sourceLocation)
    }

    // MARK: - registry

    @Test("a multi-layer image with deleted files and an opaque directory equals umoci unpack of it")
    func multiLayerEqualsUmoci() throws {
        let world = try Self.world()
        let pool = try Pool()
        let result = try Self.pull(world.registry.reference(Self.repository, tag: "multi"), "multi", pool)
        #expect(result.status == 0, "\(result.stderr)")
        let bundle = pool.dir.appending("bundle")
        try world.layout.unpack("multi", into: bundle)
        let ours = try Self.listing(pool.path + "/multi")
        #expect(ours == (try Self.listing(bundle + "/rootfs")))
        // What the layers say, checked directly too.
        let tree = pool.path + "/multi"
        #expect(!FileManager.default.fileExists(atPath: tree + "/etc/hostname"))
        #expect(!FileManager.default.fileExists(atPath: tree + "/special/sticky-dir"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tree + "/usr/share/imagectl") == ["fresh"])
        #expect(try String(contentsOfFile: tree + "/srv/marker", encoding: .utf8) == "changed\n")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: tree + "/opt/app/link") == "run")
        #expect(ours.contains("./opt/app/run f 640 1000 1000 4 "))
        #expect(ours.contains("./special/setuid f 4755 "))
        let show = try Imagectl.run(["show", "multi"], root: pool.path)
        #expect(show.stdout.contains("OCI reference: 127.0.0.1:\(world.registry.port)/\(Self.repository):multi"), "\(show.stdout)")
        #expect(show.stdout.contains("OCI layers: 3"))
        #expect(pool.leftovers() == ["multi", "multi.imagectl.json", "multi.oci.json"])
    }

    @Test("run -M honours Entrypoint, Cmd, Env, WorkingDir and User; a command replaces Cmd; show prints them")
    func runHonoursConfig() throws {
        let world = try Self.world()
        let pool = try Pool()
        let result = try Self.pull(world.registry.reference(Self.repository, tag: "configured"), "app", pool, ["-q"])
        #expect(result.status == 0, "\(result.stderr)")
        let plain = try Imagectl.run(["run", "-q", "-M", "app"], root: pool.path)
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout == "from-cmd 1000:1000 /srv bar\n")
        let replaced = try Imagectl.run(["run", "-q", "-M", "app", "other-arg"], root: pool.path)
        #expect(replaced.stdout == "other-arg 1000:1000 /srv bar\n", "\(replaced.stderr)")
        let overridden = try Imagectl.run(["run", "-q", "-M", "app", "-E", "FOO=cli", "--user=0", "--chdir=/etc"], root: pool.path)
        #expect(overridden.stdout == "from-cmd 0:0 /etc cli\n", "\(overridden.stderr)")
        let show = try Imagectl.run(["show", "app"], root: pool.path)
        for line in ["Cmd: from-cmd", "Env: FOO=bar", "WorkingDir: /srv", "User: 1000", "ExposedPorts: 8080/tcp", "Labels: org.example=yes"] {
            #expect(show.stdout.contains(line), "\(line) in \(show.stdout)")
        }
        let json = try Imagectl.run(["show", "--json", "app"], root: pool.path)
        #expect(json.stdout.contains("\"Entrypoint\""), "\(json.stdout)")
    }

    @Test("a second image sharing the base layer downloads only its new layer; clean prunes unused layers")
    func sharedLayers() throws {
        let world = try Self.world()
        let pool = try Pool()
        let multi = try world.layout.manifest("multi")
        let other = try world.layout.manifest("other")
        #expect(multi.layers.first == other.layers.first)
        let before = world.registry.blobGets(Self.repository).count
        #expect(try Self.pull(world.registry.reference(Self.repository, tag: "multi"), "multi", pool).status == 0)
        let first = Array(world.registry.blobGets(Self.repository).dropFirst(before))
        #expect(Set(first) == Set(multi.layers + [multi.config]), "\(first)")
        let result = try Self.pull(world.registry.reference(Self.repository, tag: "other"), "other", pool)
        #expect(result.status == 0, "\(result.stderr)")
        let second = Array(world.registry.blobGets(Self.repository).dropFirst(before + first.count))
        #expect(second.sorted() == [other.config, other.layers[1]].sorted(), "\(second)")
        #expect(try String(contentsOfFile: pool.path + "/other/srv/other", encoding: .utf8) == "other\n")
        #expect(pool.cached().count == 4)

        // Nothing unused yet; once "other" is gone its own layer is, the shared one stays.
        #expect(try Imagectl.run(["clean"], root: pool.path).stdout.contains("unused OCI layer") == false)
        #expect(try Imagectl.run(["remove", "other"], root: pool.path).status == 0)
        let clean = try Imagectl.run(["clean"], root: pool.path)
        #expect(clean.stdout.contains("Removed unused OCI layer \(pool.path)/.oci-layers/sha256-\(other.layers[1].dropFirst(7))"), "\(clean.stdout)")
        #expect(pool.cached() == multi.layers.map { "sha256-" + $0.dropFirst(7) }.sorted())
    }

    @Test("layers with ../ or absolute paths, and whiteouts through a symlink or above the tree, are refused")
    func hostileLayers() throws {
        let world = try Self.world()
        let pool = try Pool()
        for (tag, text) in [("dotdot", "contains '..'"), ("absolute", "absolute path"), ("through", "through the symlink"),
                            ("whiteout-up", "contains '..'")] {
            let result = try Self.pull(world.registry.reference(Self.repository, tag: tag), tag, pool)
            Self.expectRefused(result, text, name: tag, pool: pool)
        }
        #expect(try String(contentsOfFile: world.victim + "/file", encoding: .utf8) == "keep\n")
        #expect(!FileManager.default.fileExists(atPath: pool.dir.path + "/escaped"))
        #expect(!FileManager.default.fileExists(atPath: "/escaped"))
    }

    @Test("push-oci, then skopeo copy back into an OCI layout and umoci unpack: the same tree; pushing again uploads nothing")
    func pushRoundTrip() throws {
        let world = try Self.world()
        let pool = try Pool()
        guard let busybox = Fixtures.path("busybox-tree") else { throw Failure(text: "busybox-tree missing") }
        #expect(try Imagectl.run(["import-fs", busybox, "plain"], root: pool.path).status == 0)
        #expect(try Self.pull(world.registry.reference(Self.repository, tag: "configured"), "app", pool, ["-q"]).status == 0)
        let back = try OCILayout(path: pool.dir.appending("back"))
        // umoci 0.4.7 cannot unpack zstd layers: gzip for the round trip, zstd pushed too.
        for (name, format) in [("plain", "gzip"), ("app", "gzip"), ("app", "zstd")] {
            let tag = "\(name)-\(format)"
            let push = try Imagectl.run(["push-oci", "--format=\(format)", name, world.registry.reference("test/pushed", tag: tag)], root: pool.path)
            #expect(push.status == 0, "\(push.stderr)")
            #expect(push.stdout.contains("Pushed \(name) as 127.0.0.1:\(world.registry.port)/test/pushed:\(tag)@sha256:"), "\(push.stdout)")
            try world.registry.pull(repository: "test/pushed", tag: tag, into: back.path, as: tag)
            #expect(try back.manifest(tag).layers.count == 1)
            guard format == "gzip" else {
                // umoci cannot unpack zstd layers; pull-oci can: the tar+zstd path both ways.
                let again = try Self.pull(world.registry.reference("test/pushed", tag: tag), "\(name)-again", pool)
                #expect(again.stdout.contains("(tar+zstd) applied"), "\(again.stdout) \(again.stderr)")
                #expect(try Self.listing(pool.path + "/\(name)-again") == (try Self.listing(pool.path + "/" + name)), "\(name)")
                continue
            }
            let bundle = pool.dir.appending("bundle-\(tag)")
            try back.unpack(tag, into: bundle)
            #expect(try Self.listing(bundle + "/rootfs") == (try Self.listing(pool.path + "/" + name)), "\(name)")
            if name == "app" {
                // The pulled image's config went with it: umoci's runtime config runs Entrypoint+Cmd.
                let runtime = try String(contentsOfFile: bundle + "/config.json", encoding: .utf8)
                #expect(runtime.contains("from-cmd") && runtime.contains("FOO=bar"), "\(runtime)")
            }
        }
        // The same image again: every blob is there already (HEAD), only the manifest is put.
        let uploads = { (try? String(contentsOfFile: world.registry.logPath, encoding: .utf8))?.components(separatedBy: "\"PUT /v2/test/pushed/blobs/uploads/").count ?? 0 }
        let before = uploads()
        let again = try Imagectl.run(["push-oci", "--format=gzip", "app", world.registry.reference("test/pushed", tag: "app-gzip")], root: pool.path)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("0 blobs uploaded, 2 already there"), "\(again.stdout)")
        #expect(uploads() == before)
    }

    // MARK: - a hostile registry (the test HTTP server serving files named as the API asks)

    /// Serves `tags` of the layout from a flat directory (tag files hold manifests, blobs are
    /// named `sha256:HEX`): the test server serves by the last path component.
    static func serve(_ world: World, tags: [String], in box: PullCLITests.Box) throws {
        for tag in tags {
            let manifest = try world.layout.manifest(tag)
            try manifest.bytes.write(to: URL(fileURLWithPath: box.srv + "/" + tag))
            for digest in [manifest.digest, manifest.config] + manifest.layers {
                try PullCLITests.sh("cp \(world.layout.blobPath(digest)) '\(box.srv)/\(digest)'")
            }
        }
    }

    static func reference(_ server: PullCLITests.Server, _ tag: String) -> String {
        "http://127.0.0.1:\(server.port)/\(repository):\(tag)"
    }

    @Test("a blob whose bytes do not match its digest is refused and not cached")
    func digestMismatch() throws {
        let world = try Self.world()
        let box = try PullCLITests.Box()
        try Self.serve(world, tags: ["multi"], in: box)
        let layer = try world.layout.manifest("multi").layers[0]
        // Same size, one byte changed in the middle.
        try PullCLITests.sh("printf 'X' | dd of='\(box.srv)/\(layer)' bs=1 seek=1000 conv=notrunc 2>/dev/null")
        let server = try PullCLITests.Server(directory: box.srv, log: box.path("log"))
        defer { server.stop() }
        let pool = try Pool()
        let result = try Self.pull(Self.reference(server, "multi"), "multi", pool)
        Self.expectRefused(result, "does not match its digest", name: "multi", pool: pool)
        #expect(!pool.cached().contains("sha256-" + layer.dropFirst(7)), "\(pool.cached())")
        #expect(!pool.cached().contains { $0.hasPrefix(".#") }, "\(pool.cached())")
    }

    @Test("a 100 MB manifest and an index without linux/amd64 are refused; --platform picks another entry")
    func manifestRefusals() throws {
        let world = try Self.world()
        let box = try PullCLITests.Box()
        try Self.serve(world, tags: ["other"], in: box)
        try PullCLITests.sh("truncate -s 100M \(box.srv)/huge")
        // An index whose only entry is the "other" manifest, declared linux/arm64.
        let other = try world.layout.manifest("other")
        let index = """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(other.digest)","size":\(other.bytes.count),"platform":{"architecture":"arm64","os":"linux"}}]}
            """
        try index.write(toFile: box.srv + "/armonly", atomically: true, encoding: .utf8)
        let server = try PullCLITests.Server(directory: box.srv, log: box.path("log"))
        defer { server.stop() }
        let pool = try Pool()
        Self.expectRefused(try Self.pull(Self.reference(server, "huge"), "huge", pool), "exceeds the size limit of 4194304", name: "huge", pool: pool)
        Self.expectRefused(try Self.pull(Self.reference(server, "armonly"), "armonly", pool), "no manifest for linux/amd64 (it has: linux/arm64)",
                           name: "armonly", pool: pool)
        let arm = try Self.pull(Self.reference(server, "armonly"), "armonly", pool, ["--platform=linux/arm64"])
        #expect(arm.status == 0, "\(arm.stderr)")
        #expect(FileManager.default.fileExists(atPath: pool.path + "/armonly/srv/other"))
    }

    @Test("a registry that closes mid-blob: the download resumes with a range request and the pull succeeds")
    func resumeMidBlob() throws {
        let world = try Self.world()
        let box = try PullCLITests.Box()
        try Self.serve(world, tags: ["other"], in: box)
        let base = try world.layout.manifest("other").layers[0]
        let server = try PullCLITests.Server(directory: box.srv, log: box.path("log"), arguments: ["--drop-once", base])
        defer { server.stop() }
        let pool = try Pool()
        let result = try Self.pull(Self.reference(server, "other"), "other", pool)
        #expect(result.status == 0, "\(result.stderr)")
        let requests = server.requests().filter { ($0["path"] as? String)?.hasSuffix(base) == true }
        #expect(requests.count == 2, "\(requests)")
        #expect(requests.last?["range"] as? String != nil, "\(requests)")
        #expect(FileManager.default.fileExists(atPath: pool.path + "/other/srv/other"))
        #expect(FileManager.default.fileExists(atPath: pool.path + "/other/bin/busybox"))
    }
}
