import Testing
@testable import Pull

@Suite("pull: checksum files and URLs")
struct ChecksumTests {
    static let a = String(repeating: "a", count: 64)
    static let b = String(repeating: "b", count: 64)

    @Test("a line counts only from its start, for its own name, in the three separator forms")
    func lines() throws {
        let text = """
            \(Self.a)  one.raw.xz
            \(Self.b) *two.raw.xz
            \(Self.a) three.raw.xz
            x\(Self.b)  four.raw.xz
            # \(Self.b)  five.raw.xz
            \(Self.b)  one.raw.xz.other
            """
        let file = ChecksumFile(name: "SHA256SUMS", contents: Array(text.utf8))
        #expect(try file.digest(for: "one.raw.xz") == Self.a)
        #expect(try file.digest(for: "two.raw.xz") == Self.b)
        #expect(try file.digest(for: "three.raw.xz") == Self.a)
        #expect(throws: PullError.self) { try file.digest(for: "four.raw.xz") }
        #expect(throws: PullError.self) { try file.digest(for: "five.raw.xz") }
        #expect(throws: PullError.self) { try file.digest(for: "one.raw") }
    }

    @Test("two different digests for one name are refused; checksum file names are recognised")
    func conflicts() throws {
        let file = ChecksumFile(name: "SHA256SUMS", contents: Array("\(Self.a)  x.raw\n\(Self.b)  x.raw\n".utf8))
        #expect(throws: PullError.self) { try file.digest(for: "x.raw") }
        #expect(ChecksumFile.isChecksumFileName("SHA256SUMS"))
        #expect(ChecksumFile.isChecksumFileName("foo.raw.sha256"))
        #expect(!ChecksumFile.isChecksumFileName("foo.raw.xz"))
    }

    @Test("local names, sibling URLs and Content-Range parsing")
    func urls() throws {
        #expect(Puller.localName(for: "https://example.org/a/foo.raw.xz?x=1", payload: .raw) == "foo")
        #expect(Puller.localName(for: "https://example.org/a/bar.tar.zst", payload: .tar) == "bar")
        #expect(Puller.sibling(of: "https://example.org/a/foo.raw.xz?x=1", "SHA256SUMS") == "https://example.org/a/SHA256SUMS")
        #expect(Puller.sibling(of: "file:///srv/img/foo.raw", "foo.raw.sha256") == "file:///srv/img/foo.raw.sha256")
        #expect(throws: PullError.self) { try Puller.fileName(of: "ftp://example.org/foo.raw") }
        #expect(throws: PullError.self) { try Puller.fileName(of: "https://example.org/dir/") }
        #expect(PayloadDownload.parseContentRange("bytes 100-199/1000")?.start == 100)
        #expect(PayloadDownload.parseContentRange("bytes 100-199/1000")?.total == 1000)
        #expect(PayloadDownload.parseContentRange("bytes */1000")?.total == 1000)
        #expect(PayloadDownload.parseContentRange("bytes 5-1/10") == nil)
    }
}
