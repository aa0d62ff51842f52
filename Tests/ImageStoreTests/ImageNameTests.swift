import Foundation
import ImageStore
import Testing

@Suite struct ImageNameTests {
    @Test(arguments: ["debian", "fedora-40", "a.b.c", "débian", ".hidden", "x_y", "name with space"])
    func acceptsValidNames(_ text: String) throws {
        let name = try ImageName(validating: text)
        #expect(name.rawValue == text)
        #expect(name.description == text)
        #expect(name.isHidden == text.hasPrefix("."))
    }

    @Test func rejectsWhatFormatsForbids() {
        let cases: [(String, ImageName.Error)] = [
            ("", .empty),
            (".", .dotOrDotDot(".")),
            ("..", .dotOrDotDot("..")),
            ("a/b", .containsSlash("a/b")),
            ("/etc", .containsSlash("/etc")),
            (".#tmp", .temporaryPrefix(".#tmp")),
            ("a\nb", .controlCharacter("a\nb")),
            ("tab\there", .controlCharacter("tab\there")),
            ("del\u{7f}", .controlCharacter("del\u{7f}")),
            ("bad\u{FFFD}utf8", .controlCharacter("bad\u{FFFD}utf8")),
        ]
        for (text, expected) in cases {
            #expect(throws: expected) { try ImageName(validating: text) }
        }
    }

    @Test func lengthIsBounded() throws {
        _ = try ImageName(validating: String(repeating: "a", count: ImageName.maximumLength))
        #expect(throws: ImageName.Error.self) { try ImageName(validating: String(repeating: "a", count: ImageName.maximumLength + 1)) }
        // Bytes, not characters: 101 two-byte characters are too long.
        #expect(throws: ImageName.Error.self) { try ImageName(validating: String(repeating: "é", count: 101)) }
    }

    @Test func errorsSayWhatIsWrong() {
        #expect(ImageName.Error.containsSlash("a/b").description.contains("'/'"))
        #expect(ImageName.Error.temporaryPrefix(".#x").description.contains(".#"))
        #expect(ImageName.Error.empty.description == "image name is empty")
    }

    @Test func codableAsPlainStringAndValidatedOnDecode() throws {
        let data = try JSONEncoder().encode([try ImageName(validating: "web")])
        #expect(String(decoding: data, as: UTF8.self) == #"["web"]"#)
        #expect(try JSONDecoder().decode([ImageName].self, from: data).first?.rawValue == "web")
        #expect(throws: (any Error).self) { try JSONDecoder().decode([ImageName].self, from: Data(#"[".#bad"]"#.utf8)) }
    }
}
