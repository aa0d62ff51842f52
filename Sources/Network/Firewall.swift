import Foundation
import Netlink

/// One element of imagectl's nftables table: a masqueraded subnet, or a port forward. A machine's
/// rules are its elements, added in one transaction when it starts and deleted when it ends.
public struct FirewallElement: Codable, Equatable, Sendable {
    /// "subnets" or "ports".
    public var set: String
    public var key: String
    /// The map's value (a port forward's target), nil for a set.
    public var value: String?

    var addition: String { "add element ip \(Nftables.table) \(set) { \(key)\(value.map { " : \($0)" } ?? "") }" }
    var deletion: String { "delete element ip \(Nftables.table) \(set) { \(key) }" }
}

/// The nftables side of a machine: masquerade of its subnet when leaving it, and -p port forwards
/// to its address. All machines share one table, "ip imagectl", as nspawn shares io.systemd.nat:
/// its chains and rules are made once and stay, and a machine only adds and deletes elements of
/// its set and map. Adding or deleting a table with base chains registers or unregisters netfilter
/// hooks, which waits for an RCU grace period, a two-digit number of milliseconds on every start
/// and every end; elements cost neither.
///
/// The command text holds no user input: only addresses imagectl chose and port numbers it parsed.
public struct FirewallRules: Equatable, Sendable {
    /// The subnet that is masqueraded when leaving it (nil: none, e.g. a bridge owned by someone
    /// else).
    public var masquerade: Subnet?
    /// Port forwards to `target`.
    public var ports: [PortForward]
    public var target: IPAddress?

    public init(masquerade: Subnet?, ports: [PortForward], target: IPAddress?) {
        self.masquerade = masquerade
        self.ports = ports
        self.target = target
    }

    public var isEmpty: Bool { elements.isEmpty }

    public var elements: [FirewallElement] {
        var elements: [FirewallElement] = []
        if let masquerade { elements.append(.init(set: "subnets", key: masquerade.description)) }
        if let target {
            for port in ports {
                elements.append(.init(set: "ports", key: "\(port.proto.rawValue) . \(port.hostPort)",
                                      value: "\(target) . \(port.containerPort)"))
            }
        }
        return elements
    }
}

enum Nftables {
    static let table = "imagectl"

    /// The table, made (or repaired) in one transaction that any number of imagectl processes may
    /// run at once: "add" of an existing table, set or chain changes nothing, and the rules are
    /// flushed and written again in the same transaction.
    /// - postrouting: masquerade what leaves a machine's subnet for anywhere but such a subnet;
    /// - prerouting: DNAT of connections from outside to the host's own addresses;
    /// - output: the same for connections the host itself makes, loopback excepted (a DNAT from
    ///   127.0.0.1 would leave through the veth with that source unless route_localnet), as nspawn.
    static let definition = """
        add table ip \(table)
        add set ip \(table) subnets { type ipv4_addr; flags interval; }
        add map ip \(table) ports { type inet_proto . inet_service : ipv4_addr . inet_service; }
        add chain ip \(table) postrouting { type nat hook postrouting priority srcnat + 1; policy accept; }
        add chain ip \(table) prerouting { type nat hook prerouting priority dstnat + 1; policy accept; }
        add chain ip \(table) output { type nat hook output priority -99; policy accept; }
        flush chain ip \(table) postrouting
        flush chain ip \(table) prerouting
        flush chain ip \(table) output
        add rule ip \(table) postrouting ip saddr @subnets ip daddr != @subnets masquerade
        add rule ip \(table) prerouting fib daddr type local dnat ip addr . port to meta l4proto . th dport map @ports
        add rule ip \(table) output ip daddr != 127.0.0.0/8 fib daddr type local dnat ip addr . port to meta l4proto . th dport map @ports

        """

    /// Adds `elements` in one transaction; the table is made first when it is missing.
    static func add(_ elements: [FirewallElement], for machine: String) throws {
        guard !elements.isEmpty else { return }
        let library = try LibNftables.shared()
        let additions = elements.map(\.addition).joined(separator: "\n")
        let what = "add the nftables rules of \(machine)"
        // The common case: the table exists (a missing one fails the whole transaction).
        if (try? library.execute(additions, for: what)) != nil { return }
        _ = try library.execute(definition + additions, for: what)
    }

    /// Deletes `elements`; one already gone (a flushed table, say) does not keep the others.
    static func delete(_ elements: [FirewallElement]) {
        guard !elements.isEmpty, let library = try? LibNftables.shared() else { return }
        if (try? library.execute(elements.map(\.deletion).joined(separator: "\n"), for: "delete rules")) != nil { return }
        for element in elements { _ = try? library.execute(element.deletion, for: "delete rules") }
    }

    /// The number of elements in the table's set and map, nil when there is no table.
    static func elementCounts() -> [String: Int]? {
        guard let library = try? LibNftables.shared(),
              let listing = try? library.execute("list table ip \(table)", for: "list the nftables table") else { return nil }
        var counts = ["subnets": 0, "ports": 0]
        // nft prints "set NAME {" / "map NAME {" blocks with "elements = { a, b,\n c }".
        var current: String?
        var inElements = false
        for line in listing.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasPrefix("set ") || line.hasPrefix("map ") {
                current = line.split(separator: " ").dropFirst().first.map(String.init)
                continue
            }
            var rest = Substring(line)
            if line.hasPrefix("elements = {") {
                inElements = true
                rest = rest.dropFirst("elements = {".count)
            }
            guard inElements, let name = current else { continue }
            let closed = rest.hasSuffix("}")
            let items = rest.replacingOccurrences(of: "}", with: "").split(separator: ",").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            counts[name, default: 0] += items.count
            if closed { inElements = false }
        }
        return counts
    }

    /// Deletes the table when no element is left in it (`imagectl clean`, no machine running).
    static func deleteTableIfUnused() {
        guard let counts = elementCounts(), counts.values.allSatisfy({ $0 == 0 }),
              let library = try? LibNftables.shared() else { return }
        _ = try? library.execute("delete table ip \(table)", for: "delete the nftables table")
    }
}
