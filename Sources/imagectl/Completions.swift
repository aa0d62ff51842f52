import ArgumentParser
import Foundation
import ImageStore
import Machines

/// Shell completion of image and machine names. The bash, zsh and fish scripts that
/// `imagectl --generate-completion-script SHELL` writes call imagectl itself to complete an
/// argument declared with one of these; the closure runs in that imagectl and gets the words
/// typed so far, so `--root DIR` on the line is honoured.
enum Completions {
    /// Image names in the pool the command line names (`--root`, else $IMAGECTL_ROOT, else the
    /// system search path). Nothing is created; an unreadable pool completes to nothing.
    static let imageNames: CompletionKind = .custom { words, _, prefix in
        let root = rootOption(in: words) ?? ProcessInfo.processInfo.environment["IMAGECTL_ROOT"].flatMap { $0.isEmpty ? nil : $0 }
        // Synchronous: the parser runs only synchronous completions from a custom main().
        let images = (try? ImageStore.list(ImageLookup.searchPath(root: root), includeHidden: prefix.hasPrefix("."))) ?? []
        return images.map(\.name).filter { $0.hasPrefix(prefix) }
    }

    /// Names of the running containers and VMs.
    static let machineNames: CompletionKind = .custom { _, _, prefix in
        MachineRegistry().list().map(\.name).filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// `--root DIR` or `--root=DIR` among the words of the command line.
    static func rootOption(in words: [String]) -> String? {
        for (index, word) in words.enumerated() {
            if word.hasPrefix("--root=") { return String(word.dropFirst(7)) }
            if word == "--root", index + 1 < words.count { return words[index + 1] }
        }
        return nil
    }
}
