import ArgumentParser
import ImageStore
import Network
import Runner

/// `imagectl clean [--all] [--dry-run]`.
struct StoreClean: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Remove leftovers of interrupted imports and clones, and cached OCI layers no image uses.",
        discussion: "Removes '.#' temporaries and stale lock files from the pool; never anything whose image is locked by a running process."
    )

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Flag(name: .long, help: "Also remove hidden images (names starting with '.').")
    var all = false
    @Flag(name: .long, help: "Only print what would be removed.")
    var dryRun = false

    func run() async throws {
        let cleaned = try await store.openStore().clean(all: all, dryRun: dryRun)
        // Links, dnsmasq instances and nftables rules of machines whose imagectl was killed.
        let machines = dryRun ? [] : HostNetwork.cleanLeftovers()
        // Empty cgroups of containers that ended (killed, or slow to empty).
        let cgroups = dryRun ? [] : Leftovers.cleanCgroups()
        if output.json {
            try output.printJSON(cleaned)
            return
        }
        let verb = dryRun ? "Would remove" : "Removed"
        var text = ""
        for entry in cleaned {
            let what = switch entry.kind {
            case .temporary: "temporary"
            case .lock: "stale lock"
            case .hiddenImage: "hidden image"
            case .ociLayer: "unused OCI layer"
            }
            text += "\(verb) \(what) \(entry.path)\n"
        }
        for machine in machines { text += "Removed the network leftovers of machine \(machine)\n" }
        for cgroup in cgroups { text += "Removed the cgroup of an ended container \(cgroup)\n" }
        if output.table.legend {
            text += "\(cleaned.count) \(cleaned.count == 1 ? "entry" : "entries") \(dryRun ? "to remove" : "removed").\n"
        }
        if !output.quiet { Terminal.standardOutput(text) }
    }
}
