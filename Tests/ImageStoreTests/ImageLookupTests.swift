import Foundation
import ImageStore
import Testing
import TestSupport

/// The one name -> path resolver that the store verbs, `run -M`, `vm -i` and the dissect verbs
/// share (FORMATS.md §3, systemd's discover-image.c order).
@Suite("Image lookup")
struct ImageLookupTests {
    let scratch: TemporaryDirectory
    let first: String
    let second: String
    var searchPath: [ImageStore.SearchDirectory] {
        [ImageStore.SearchDirectory(path: first, vendor: false), ImageStore.SearchDirectory(path: second, vendor: true)]
    }

    init() throws {
        scratch = try TemporaryDirectory(prefix: "lookup")
        first = scratch.appending("etc-machines")
        second = scratch.appending("usr-lib-machines")
        for directory in [first, second] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    }

    func directory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: 4096))
    }

    @Test func nameBeforeNameDotRawInOneDirectory() throws {
        try directory(first + "/web")
        file(first + "/web.raw")
        let image = try ImageLookup.find("web", in: searchPath)
        #expect(image.path == first + "/web")
        #expect(image.type == .directory)
    }

    @Test func theFirstDirectoryHoldingTheNameWins() throws {
        // NAME.raw early in the search path beats NAME later: directories first, then suffixes.
        file(first + "/web.raw")
        try directory(second + "/web")
        let image = try ImageLookup.find("web", in: searchPath)
        #expect(image.path == first + "/web.raw")
        #expect(image.type == .raw)
        #expect(!image.vendor)
    }

    @Test func entriesThatAreNoImagesArePassedOver() throws {
        // A regular file without .raw is no image: the NAME.raw beside it is.
        file(first + "/db")
        file(first + "/db.raw")
        #expect(try ImageLookup.find("db", in: searchPath).path == first + "/db.raw")
        // A FIFO is no image either: the lookup goes on to the next directory.
        #expect(mkfifo(first + "/pipe", 0o600) == 0)
        try directory(second + "/pipe")
        let pipe = try ImageLookup.find("pipe", in: searchPath)
        #expect(pipe.path == second + "/pipe")
        #expect(pipe.vendor)
    }

    @Test func missingAndInvalidNamesAreErrors() throws {
        #expect(throws: ImageStore.Error.noSuchImage("nothing")) { try ImageLookup.find("nothing", in: searchPath) }
        #expect(throws: ImageName.Error.self) { try ImageLookup.find(".#web.lck", in: searchPath) }
    }

    @Test func anArgumentWithASlashOrAnExistingFileIsAPath() throws {
        try directory(first + "/web")
        #expect(try ImageLookup.resolve("./web", root: first) == .path("./web"))
        #expect(try ImageLookup.resolve(first + "/web", root: first) == .path(first + "/web"))
        guard case .image(let image) = try ImageLookup.resolve("web", root: first) else {
            Issue.record("a bare name is looked up in the store")
            return
        }
        #expect(image.path == first + "/web")
        #expect(ImageLookup.isPath("/no/such/file"))
    }

    @Test func theStoreFindsWhatTheLookupFinds() async throws {
        try directory(first + "/web")
        file(first + "/web.raw")
        let store = try ImageStore(pool: first, searchPath: searchPath, createPool: false)
        #expect(try await store.image(named: "web").path == (try ImageLookup.find("web", in: searchPath)).path)
    }

    @Test func anExplicitRootIsTheOnlyDirectoryAndIsNotCreated() {
        let root = scratch.appending("not-there")
        #expect(ImageLookup.searchPath(root: root).map(\.path) == [root])
        #expect(throws: ImageStore.Error.noSuchImage("web")) { try ImageLookup.find("web", root: root) }
        #expect(!FileManager.default.fileExists(atPath: root))
        #expect(ImageLookup.searchPath(root: nil) == ImageStore.systemSearchPath)
    }
}
