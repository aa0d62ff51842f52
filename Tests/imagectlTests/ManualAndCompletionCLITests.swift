import Foundation
import Testing
import TestSupport

/// What scripts/install.sh installs besides the binary: the man page generated from the
/// command definitions, and bash completion that completes the pool's image names.
@Suite("man page and completion")
struct ManualAndCompletionCLITests {
    /// swift-argument-parser's generate-manual tool, which `swift package generate-manual`
    /// (scripts/test.sh, scripts/install.sh) builds beside imagectl.
    static var generateManualTool: String {
        URL(fileURLWithPath: Imagectl.binary).deletingLastPathComponent().appendingPathComponent("generate-manual-tool").path
    }

    @Test func theGeneratedManPageRenders() throws {
        try Privileged.require(.tool(Self.generateManualTool), .tool("man"))
        let scratch = try TemporaryDirectory(prefix: "imagectl-man")
        let generated = try Tool.run(Self.generateManualTool, [Imagectl.binary, "--output-directory", scratch.path])
        try #require(generated.status == 0, "generate-manual: \(generated.stderr)")
        let page = scratch.appending("imagectl.1")
        let rendered = try Tool.run("man", ["-l", "--warnings", page], environment: ["MANWIDTH": "100", "LC_ALL": "C.UTF-8"])
        #expect(rendered.status == 0, "\(rendered.stderr)")
        #expect(rendered.stderr.isEmpty, "man warned: \(rendered.stderr)")
        #expect(rendered.stdout.hasPrefix("IMAGECTL(1)"), "\(rendered.stdout.prefix(200))")
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION"] { #expect(rendered.stdout.contains("\n\(section)\n"), "no \(section)") }
        // Every verb of `imagectl --help`, with its options.
        let help = try Imagectl.run(["--help"])
        let verbs = help.stdout.components(separatedBy: "SUBCOMMANDS:").last?.split(separator: "\n")
            .compactMap { line -> String? in
                guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return nil }
                return line.split(separator: " ").first.map(String.init)
            }.filter { $0.allSatisfy { $0.isLowercase || $0 == "-" } } ?? []  // not "See 'imagectl help ...'"
        #expect(verbs.count > 30, "\(verbs)")
        // Each verb starts an item of the description list: "     VERB" then spaces or a line end.
        let items = Set(rendered.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("     "), !line.hasPrefix("      ") else { return nil }
            return line.split(separator: " ").first.map(String.init)
        })
        for verb in verbs { #expect(items.contains(verb), "\(verb) missing from the man page") }
        for option in ["--log-level", "--machine", "--read-only", "--verify", "--image-policy"] {
            #expect(rendered.stdout.contains(option), "\(option) missing from the man page")
        }
    }

    /// Drives the bash completion function that `--generate-completion-script bash` defines, as
    /// bash calls it on TAB, and returns the candidates.
    static func complete(_ words: [String], scratch: TemporaryDirectory, pool: String) throws -> [String] {
        let script = scratch.appending("imagectl.bash")
        if !FileManager.default.fileExists(atPath: script) {
            let generated = try Imagectl.run(["--generate-completion-script", "bash"])
            try #require(generated.status == 0, "\(generated.stderr)")
            try generated.stdout.write(toFile: script, atomically: false, encoding: .utf8)
        }
        let line = words.joined(separator: " ")
        let quoted = words.map { "'\($0)'" }.joined(separator: " ")
        let driver = """
            source '\(script)'
            COMP_WORDS=(\(quoted))
            COMP_CWORD=\(words.count - 1)
            COMP_LINE='\(line)'
            COMP_POINT=${#COMP_LINE}
            _imagectl imagectl '\(words.last ?? "")' '\(words.count > 1 ? words[words.count - 2] : "")'
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let directory = URL(fileURLWithPath: Imagectl.binary).deletingLastPathComponent().path
        let result = try Tool.run("bash", ["--norc", "--noprofile", "-c", driver],
                                  environment: ["PATH": "\(directory):/usr/bin:/bin", "IMAGECTL_ROOT": pool])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init).filter { !$0.isEmpty }.sorted()
    }

    @Test func bashCompletesImageNamesForRunMachine() throws {
        try Privileged.require(.tool("bash"))
        let scratch = try TemporaryDirectory(prefix: "imagectl-completion")
        let pool = scratch.appending("pool")
        for tree in ["alpha", "beta", ".hidden"] {
            try FileManager.default.createDirectory(atPath: "\(pool)/\(tree)", withIntermediateDirectories: true)
        }
        _ = FileManager.default.createFile(atPath: pool + "/gamma.raw", contents: Data(count: 4096))
        _ = FileManager.default.createFile(atPath: pool + "/gamma.nspawn", contents: Data())

        #expect(try Self.complete(["imagectl", "run", "-M", ""], scratch: scratch, pool: pool) == ["alpha", "beta", "gamma"])
        #expect(try Self.complete(["imagectl", "run", "--machine", "g"], scratch: scratch, pool: pool) == ["gamma"])
        #expect(try Self.complete(["imagectl", "show", ""], scratch: scratch, pool: pool) == ["alpha", "beta", "gamma"])
        #expect(try Self.complete(["imagectl", "remove", "alpha", "b"], scratch: scratch, pool: pool) == ["beta"])
        // --root on the line names the pool.
        let other = scratch.appending("other")
        try FileManager.default.createDirectory(atPath: other + "/delta", withIntermediateDirectories: true)
        #expect(try Self.complete(["imagectl", "clone", "--root", other, ""], scratch: scratch, pool: pool) == ["delta"])
    }
}
