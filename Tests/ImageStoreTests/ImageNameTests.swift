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
            // Names that would alias another image's files (issue 16).
            ("x.raw", .reservedSuffix("x.raw", suffix: ".raw")),
            (".hidden.raw", .reservedSuffix(".hidden.raw", suffix: ".raw")),
            ("x.nspawn", .reservedSuffix("x.nspawn", suffix: ".nspawn")),
            ("x.roothash", .reservedSuffix("x.roothash", suffix: ".roothash")),
            ("x.roothash.p7s", .reservedSuffix("x.roothash.p7s", suffix: ".roothash.p7s")),
            ("x.verity", .reservedSuffix("x.verity", suffix: ".verity")),
            ("x.imagectl.json", .reservedSuffix("x.imagectl.json", suffix: ".imagectl.json")),
        ]
        for (text, expected) in cases {
            #expect(throws: expected) { try ImageName(validating: text) }
        }
    }

    @Test("a suffix only counts at the end: names containing one elsewhere are fine")
    func suffixInTheMiddle() throws {
        for text in ["x.raw.d", "raw", ".raw-http%3A%2F%2Fhost%2Fdisk.raw~", "x.rawhide", "nspawn"] {
            #expect(try ImageName(validating: text).rawValue == text)
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
