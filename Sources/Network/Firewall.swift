import Foundation
import Netlink

/// nftables rules of one machine, in a table of its own ("ip imagectl-MACHINE") so that they are
/// added and removed in one transaction each and no other program's rules are touched. Given to
/// `nft -j -f -` as JSON (libnftables' JSON schema), so no rule text is ever parsed from strings
/// that contain user input.
public struct FirewallRules: Equatable, Sendable {
    public var machine: String
    /// The container-side subnet that is masqueraded when leaving it (nil: none, e.g. a bridge
    /// owned by someone else).
    public var masquerade: Subnet?
    /// Port forwards to `target`.
    public var ports: [PortForward]
    public var target: IPAddress?

    public static let tablePrefix = "imagectl-"

    public init(machine: String, masquerade: Subnet?, ports: [PortForward], target: IPAddress?) {
        self.machine = machine
        self.masquerade = masquerade
        self.ports = ports
        self.target = target
    }

    /// The table's name; characters nft would not keep in an identifier become '_'.
    public static func tableName(machine: String) -> String {
        tablePrefix + String(machine.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
    }

    public var tableName: String { Self.tableName(machine: machine) }
    public var isEmpty: Bool { masquerade == nil && (ports.isEmpty || target == nil) }

    /// The JSON batch: the table, then nat chains on postrouting (masquerade), prerouting (DNAT
    /// of connections from outside to the host's own addresses) and output (DNAT of connections
    /// the host itself makes to its own addresses, loopback excepted, as nspawn does).
    public func json() -> [String: Any] {
        let table = tableName
        var commands: [[String: Any]] = [["add": ["table": ["family": "ip", "name": table]]]]
        func chain(_ name: String, hook: String, priority: Int) {
            commands.append(["add": ["chain": ["family": "ip", "table": table, "name": name, "type": "nat",
                                               "hook": hook, "prio": priority, "policy": "accept"]]])
        }
        func rule(_ chainName: String, _ expressions: [[String: Any]]) {
            commands.append(["add": ["rule": ["family": "ip", "table": table, "chain": chainName, "expr": expressions]]])
        }
        func match(_ op: String, _ left: [String: Any], _ right: Any) -> [String: Any] {
            ["match": ["op": op, "left": left, "right": right]]
        }
        func payload(_ proto: String, _ field: String) -> [String: Any] { ["payload": ["protocol": proto, "field": field]] }
        if let subnet = masquerade {
            let prefix: [String: Any] = ["prefix": ["addr": "\(subnet.network.address)", "len": 28]]
            chain("postrouting", hook: "postrouting", priority: 100)
            rule("postrouting", [match("==", payload("ip", "saddr"), prefix), match("!=", payload("ip", "daddr"), prefix),
                                 ["masquerade": NSNull()]])
        }
        if let target, !ports.isEmpty {
            chain("prerouting", hook: "prerouting", priority: -100)
            chain("output", hook: "output", priority: -100)
            let local = match("==", ["fib": ["result": "type", "flags": ["daddr"]]], "local")
            let notLoopback = match("!=", payload("ip", "daddr"), ["prefix": ["addr": "127.0.0.0", "len": 8]])
            for port in ports {
                let dport = match("==", payload(port.proto.rawValue, "dport"), Int(port.hostPort))
                let dnat: [String: Any] = ["dnat": ["addr": "\(target)", "port": Int(port.containerPort)]]
                rule("prerouting", [local, dport, dnat])
                rule("output", [local, notLoopback, dport, dnat])
            }
        }
        return ["nftables": commands]
    }
}

enum Nftables {
    static var binary: String? {
        ["/usr/sbin/nft", "/usr/bin/nft", "/sbin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func apply(_ rules: FirewallRules) throws {
        guard let binary else { throw NetworkSetupError.missingTool("nft", package: "nftables") }
        // A leftover table of an earlier machine of this name goes first (same transaction).
        var batch = rules.json()
        var commands = batch["nftables"] as! [[String: Any]]
        commands.insert(["add": ["table": ["family": "ip", "name": rules.tableName]]], at: 0)
        commands.insert(["delete": ["table": ["family": "ip", "name": rules.tableName]]], at: 1)
        batch["nftables"] = commands
        let data = try JSONSerialization.data(withJSONObject: batch)
        let result = try HostProcess.run(binary, ["-j", "-f", "-"], input: data)
        guard result.status == 0 else {
            throw NetworkSetupError.step("add nftables rules of \(rules.machine)", result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    static func deleteTable(_ name: String) {
        guard let binary else { return }
        let batch: [String: Any] = ["nftables": [["delete": ["table": ["family": "ip", "name": name]]]]]
        guard let data = try? JSONSerialization.data(withJSONObject: batch) else { return }
        _ = try? HostProcess.run(binary, ["-j", "-f", "-"], input: data)
    }

    /// Names of the tables imagectl made (prefix "imagectl-").
    static func tables() -> [String] {
        guard let binary, let result = try? HostProcess.run(binary, ["-j", "list", "tables", "ip"]), result.status == 0,
              let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
              let items = object["nftables"] as? [[String: Any]] else { return [] }
        return items.compactMap { ($0["table"] as? [String: Any])?["name"] as? String }.filter { $0.hasPrefix(FirewallRules.tablePrefix) }
    }
}
