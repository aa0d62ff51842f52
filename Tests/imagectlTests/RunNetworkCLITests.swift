import Foundation
import Testing
import TestSupport

/// `imagectl run` with networking, end to end. Every test runs its whole scenario in a shell
/// under `unshare --net --mount`: that new network namespace stands in for the host (the
/// container's veth, dnsmasq, nftables rules and IPv4 forwarding are made there), so nothing
/// touches this machine's interfaces, routes or firewall, and every packet stays between
/// namespaces the test made.
@Suite("imagectl run networking", .serialized)
struct RunNetworkCLITests {
    /// A copy of the busybox tree and a scratch runtime directory.
    final class Scene: @unchecked Sendable {
        // Immutable after init.
        let scratch: TemporaryDirectory
        let tree: String
        init() throws {
            try Privileged.require(.root, .fixture("busybox-tree"), .tool("unshare"), .tool("dnsmasq"), .tool("nft"), .tool("ip"))
            scratch = try TemporaryDirectory(prefix: "run-net")
            tree = scratch.appending("tree")
            let r = try Tool.run("cp", ["-a", Fixtures.path("busybox-tree") ?? "", tree])
            guard r.status == 0 else { throw SceneError(text: r.stderr) }
        }

        /// Runs `script` with sh in a new network and mount namespace (lo up). $IMAGECTL is the
        /// binary, $TREE the tree; the runtime directory and the pool are the test's own.
        func host(_ script: String) throws -> Tool.Result {
            try Tool.run("unshare", ["--net", "--mount", "/bin/sh", "-c", "ip link set lo up\n" + script], environment: [
                "IMAGECTL": Imagectl.binary, "TREE": tree,
                "IMAGECTL_RUNTIME_DIR": scratch.appending("run"), "IMAGECTL_ROOT": scratch.appending("pool"),
                "IMAGECTL_NETWORK_POOL": "10.232.0.0/16",
            ])
        }
    }
    struct SceneError: Error { var text: String }

    /// What is left in the stand-in host after a run: links but lo, elements in imagectl's
    /// nftables table (a machine's rules; the table itself stays, as nspawn's does), network
    /// records.
    static let leftovers = """
        echo "links: $(ip -o link | awk -F': ' '$2 != "lo" {print $2}' | tr '\\n' ' ')"
        echo "rules: $(nft list ruleset | grep 'elements = ' | tr -d '\\t\\n')"
        echo "records: $(ls "$IMAGECTL_RUNTIME_DIR/network" 2>/dev/null | grep -v '^lock$' | tr '\\n' ' ')"
        """

    /// A namespace "client" on a veth to the stand-in host (10.99.0.1, client 10.99.0.2): traffic
    /// that reaches the host from outside, for the prerouting forwards.
    static let clientNamespace = """
        ip link add up0 type veth peer name up1
        ip addr add 10.99.0.1/24 dev up0
        ip link set up0 up
        ip netns add client
        ip link set up1 netns client
        ip -n client addr add 10.99.0.2/24 dev up1
        ip -n client link set up1 up
        """

    @Test func vethPlainPayloadSeesHost0AndPingsTheHost() throws {
        let scene = try Scene()
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" -M web -n sh -c 'ip -4 -o addr show host0; ip route; ping -c 1 -W 3 10.232.0.1
                grep nameserver /etc/resolv.conf; nslookup web | grep "^Address: 10"'
            echo "exit=$?"
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("inet 10.232.0.2/28"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("default via 10.232.0.1 dev host0"))
        #expect(r.stdout.contains("1 packets received"))
        // --resolv-conf=auto: the resolver is the host side's dnsmasq, which knows the machine.
        #expect(r.stdout.contains("nameserver 10.232.0.1\n"))
        #expect(r.stdout.contains("Address: 10.232.0.2\n"))
        #expect(r.stdout.contains("exit=0"))
        #expect(r.stdout.contains("links: \n"), "\(r.stdout)")
        #expect(r.stdout.contains("rules: \n"))
        #expect(r.stdout.contains("records: \n"))
    }

    /// `machines`, `machines --json` and `status` show the container's address, as machinectl
    /// list and status do.
    @Test func machinesShowTheAddress() throws {
        let scene = try Scene()
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" -M addr -n sleep 3 &
            for i in $(seq 50); do sleep 0.1; "$IMAGECTL" machines | grep -q '^addr ' && break; done
            "$IMAGECTL" machines | grep '^addr '
            "$IMAGECTL" machines --json
            "$IMAGECTL" status addr | grep 'Address:'
            wait
            """)
        #expect(r.stdout.contains("Address: 10.232.0.2\n"), "\(r.stdout)")
        let row = r.stdout.split(separator: "\n").first { $0.hasPrefix("addr ") } ?? ""
        #expect(row.split(separator: " ").last == "10.232.0.2", "\(r.stdout)\(r.stderr)")
        let json = r.stdout.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\n", with: "")
        #expect(json.contains("\"addresses\":[\"10.232.0.2\"]"), "\(r.stdout)")
    }

    /// -p: a server inside answers on the host's address, from the host itself (output chain)
    /// and from another namespace through the host (prerouting); a second machine asking for the
    /// same host port exits 16 and makes nothing.
    @Test func portForwardAndConflict() throws {
        let scene = try Scene()
        let r = try scene.host("""
            \(Self.clientNamespace)
            "$IMAGECTL" run -q -D "$TREE" -M web -n -p tcp:8080:80 sh -c 'echo hello | nc -l -p 80; echo again | nc -l -p 80' &
            for i in $(seq 30); do sleep 0.2; out=$(busybox nc -w 2 10.99.0.1 8080 </dev/null 2>/dev/null) && [ -n "$out" ] && break; done
            echo "local: $out"
            cp -a "$TREE" "$TREE-2"
            "$IMAGECTL" run -q -D "$TREE-2" -M other -n -p 8080 true
            echo "second=$?"
            "$IMAGECTL" run -q -D "$TREE-2" -M web -n true
            echo "same name=$?"
            for i in $(seq 30); do out=$(ip netns exec client busybox nc -w 2 10.99.0.1 8080 </dev/null 2>/dev/null) && [ -n "$out" ] && break; sleep 0.2; done
            echo "remote: $out"
            wait
            ip netns del client
            ip link del up0 2>/dev/null  # the namespace goes asynchronously; its veth with it
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("local: hello"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("remote: again"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("second=16"))
        #expect(r.stderr.contains("error: host port tcp:8080 is already forwarded to machine web\n"), "\(r.stderr)")
        // The same name as a running networked machine: busy, as the machine registry says it.
        #expect(r.stdout.contains("same name=16"), "\(r.stdout)")
        #expect(r.stderr.contains("error: machine web is already running\n"), "\(r.stderr)")
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// -p udp:: a UDP server inside answers a datagram sent to the host's address from another
    /// namespace (prerouting DNAT and conntrack back); the rules go with the machine.
    @Test func udpPortForward() throws {
        let scene = try Scene()
        try Privileged.require(.tool("python3"))
        let clang = ["/opt/swift/usr/bin/clang", "/usr/bin/clang", "/usr/bin/cc"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let echo = scene.scratch.appending("udp-echo")
        let built = try Tool.run(try #require(clang), ["-static", "-O1", "-o", echo, Fixtures.repositoryPath("probes/udp-echo.c")])
        #expect(built.status == 0, "\(built.stderr)")
        let r = try scene.host("""
            \(Self.clientNamespace)
            "$IMAGECTL" run -q -D "$TREE" -M udp -n -p udp:5353:7 --bind-ro=\(echo):/udp-echo /udp-echo 7 &
            for i in $(seq 50); do
                out=$(ip netns exec client python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5); s.sendto(b"ping", ("10.99.0.1", 5353)); print(s.recvfrom(64)[0].decode())' 2>/dev/null) && [ -n "$out" ] && break
                sleep 0.2
            done
            echo "udp: $out"
            wait
            echo "exit=$?"
            ip netns del client
            ip link del up0 2>/dev/null
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("udp: ping\n"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("exit=0"))
        #expect(r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// Bad input: one `error:` line, exit 2 for a bad value, 1 for a missing interface, and no
    /// link, table or record made.
    @Test func badInputMakesNothing() throws {
        let scene = try Scene()
        let cases: [([String], Int32, String)] = [
            (["--network-zone=a/b"], 2, "error: --network-zone: 'a/b' is not a valid zone name ('vz-a/b' is not an interface name)"),
            (["-n", "-p", "70000"], 2, "error: --port: port 70000 is out of range (1-65535)"),
            (["--network-interface=averyveryverylongname"], 2, "error: --network-interface: interface name 'averyveryverylongname' is too long (at most 15 bytes)"),
            (["--network-macvlan=:lan0"], 2, "error: --network-macvlan: missing interface name"),
            (["-p", "80"], 2, "error: --port= needs a virtual Ethernet link (--network-veth, --network-bridge= or --network-zone=)"),
            (["--network-interface=nosuchif0"], 1, "error: cannot move link into namespace (nosuchif0): No such device (no such interface)"),
        ]
        for (options, status, message) in cases {
            let quoted = options.map { "'\($0)'" }.joined(separator: " ")
            let r = try scene.host("""
                "$IMAGECTL" run -q -D "$TREE" -M bad \(quoted) true
                echo "exit=$?"
                \(Self.leftovers)
                """)
            #expect(r.stdout.contains("exit=\(status)\n"), "\(options): \(r.stdout)\(r.stderr)")
            #expect(r.stderr == message + "\n", "\(options)")
            #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(options): \(r.stdout)")
        }
    }

    /// This kernel has no ipvlan: the error says so (with ipvlan, the link is there inside).
    @Test func ipvlanClearErrorOrLink() throws {
        let scene = try Scene()
        let r = try scene.host("""
            ip link add up0 type veth peer name up1
            "$IMAGECTL" run -q -D "$TREE" -M iv --network-ipvlan=up0 ip -o link show iv-up0
            echo "exit=$?"
            """)
        if r.stdout.contains("exit=0") {
            #expect(r.stdout.contains("iv-up0"))
        } else {
            #expect(r.stdout.contains("exit=1"))
            #expect(r.stderr.hasPrefix("error: cannot create ipvlan on up0 (iv-up0): "), "\(r.stderr)")
            #expect(r.stderr.hasSuffix("Operation not supported (this kernel has no ipvlan support)\n"), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1)
        }
    }

    /// A kill -9 of imagectl leaves rules, a dnsmasq and a record; `imagectl clean` removes them
    /// (and so would the next run).
    @Test func killedRunIsCleanedUp() throws {
        let scene = try Scene()
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" -M killed -n -p 8085 sleep 30 &
            pid=$!
            for i in $(seq 100); do sleep 0.1; "$IMAGECTL" machines | grep -q killed && nft list ruleset | grep -q "tcp . 808[57]" && break; done
            kill -9 $pid
            sleep 0.5
            dnsmasq=$(cat "$IMAGECTL_RUNTIME_DIR/network/ve-killed.dnsmasq.pid")
            echo "before: $(nft list ruleset | grep 'elements = ' | tr -d '\\t\\n')"
            "$IMAGECTL" clean
            echo "clean=$?"
            sleep 0.2
            # A zombie counts as gone: this namespace's processes are reaped by the real init.
            if [ -e /proc/$dnsmasq ] && ! grep -q '^State:.*Z' /proc/$dnsmasq/status; then echo "dnsmasq alive"; else echo "dnsmasq gone"; fi
            echo "tables: $(nft list tables | tr '\\n' ' ')"
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("tcp . 8085 : 10.232.0.2 . 8085"), "\(r.stdout)\(r.stderr)")
        // With no machine left, `clean` removes the shared table too.
        #expect(r.stdout.contains("tables: \n"), "\(r.stdout)")
        #expect(r.stdout.contains("clean=0"))
        #expect(r.stdout.contains("Removed the network leftovers of machine killed"), "\(r.stdout)")
        #expect(r.stdout.contains("dnsmasq gone"))
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// The next networked run removes what a killed one left, before it sets up its own.
    @Test func killedRunIsCleanedByTheNextRun() throws {
        let scene = try Scene()
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" -M killed -n -p 8087 sleep 30 &
            pid=$!
            for i in $(seq 100); do sleep 0.1; "$IMAGECTL" machines | grep -q killed && nft list ruleset | grep -q "tcp . 808[57]" && break; done
            kill -9 $pid
            sleep 0.5
            cp -a "$TREE" "$TREE-2"
            "$IMAGECTL" run -q -D "$TREE-2" -M next -n -p 8087 sh -c 'echo "next got $(ip -4 -o addr show host0 | grep -o "inet [0-9./]*")"'
            echo "next=$?"
            \(Self.leftovers)
            """)
        // Port 8087 and the first /28 are free again: the leftover record was undone first.
        #expect(r.stdout.contains("next got inet 10.232.0.2/28\nnext=0"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// Zone: two machines reach each other by name through the zone's DNS; the bridge goes with
    /// the last member.
    @Test func zoneMachinesReachEachOtherByName() throws {
        let scene = try Scene()
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" -M alpha --network-zone=lab sh -c '(echo from-alpha | nc -l -p 7000 &); sleep 4' &
            for i in $(seq 50); do sleep 0.1; ip link show vb-alpha >/dev/null 2>&1 && break; done
            sleep 0.3
            cp -a "$TREE" "$TREE-2"
            "$IMAGECTL" run -q -D "$TREE-2" -M beta --network-zone=lab sh -c '
                addr=$(nslookup alpha 10.232.0.1 | sed -n "s/^Address: *\\(10\\.[0-9.]*\\)$/\\1/p" | head -1)
                echo "alpha is $addr"
                nc -w 3 "$addr" 7000 </dev/null'
            echo "beta=$?"
            echo "bridge while alpha runs: $(ip -o link show vz-lab >/dev/null 2>&1 && echo yes || echo no)"
            wait
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("alpha is 10.232.0.2"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("from-alpha"))
        #expect(r.stdout.contains("bridge while alpha runs: no") == false)
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// --network-bridge, --network-veth-extra, --network-macvlan and --network-interface (moved
    /// back out under its own name when the machine ends).
    @Test func bridgeExtraMacvlanAndInterface() throws {
        let scene = try Scene()
        let r = try scene.host("""
            ip link add br-test type bridge
            ip link add uplink0 type veth peer name uplink0p
            ip link add spare0 type veth peer name spare0p
            "$IMAGECTL" run -q -D "$TREE" -M multi --network-bridge=br-test --network-veth-extra=xh0:xc0 \\
                --network-macvlan=uplink0 --network-interface=spare0:lan0 sh -c 'ip -o link | cut -d: -f2 | tr -d " " | cut -d@ -f1 | sort | tr "\\n" " "'
            echo
            echo "exit=$?"
            echo "back: $(ip -o link show spare0 >/dev/null && echo yes)"
            echo "gone: $(ip -o link show vb-multi 2>/dev/null; ip -o link show xh0 2>/dev/null)."
            """)
        #expect(r.stdout.contains("host0 lan0 lo mv-uplink0 xc0"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("back: yes"))
        #expect(r.stdout.contains("gone: ."))
    }

    /// -n with a booted Debian tree: networkd inside (its 80-container-host0.network) gets host0's
    /// address by DHCP from the host side's dnsmasq, the same address a plain payload gets.
    @Test func bootedDebianGetsItsAddressByDHCP() throws {
        let scene = try Scene()
        try Privileged.require(.fixture("debian-tree"))
        // Waits for the DHCP lease, writes networkd's view of host0 to the console, powers off.
        let unit = scene.scratch.appending("report-host0.service")
        try """
            [Unit]
            After=systemd-networkd.service
            [Service]
            Type=oneshot
            ExecStart=/bin/sh -c 'for i in $(seq 150); do networkctl --no-pager status host0 2>/dev/null | grep -q "DHCP4 via" && break; sleep 0.2; done; networkctl --no-pager status host0 | grep "Address:" > /dev/console; systemctl poweroff'
            """.write(toFile: unit, atomically: true, encoding: .utf8)
        let debian = Fixtures.path("debian-tree") ?? ""
        let r = try scene.host("""
            "$IMAGECTL" run -q -x -b -n -D \(debian) -M deb --bind-ro=\(unit):/etc/systemd/system/report-host0.service \
                systemd.wants=systemd-networkd.service systemd.wants=report-host0.service
            echo "exit=$?"
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("Address: 10.232.0.2 (DHCP4 via 10.232.0.1)"), "\(r.stdout.suffix(3000))\(r.stderr)")
        #expect(r.stdout.contains("exit=0"))
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"))
    }

    /// `imagectl vm -n`: the tap qemu makes gets a veth's host side (address, dnsmasq with the
    /// static lease for the MAC given to the VM's NIC, rules), removed when the VM ends.
    @Test func vmTapGetsTheHostSide() throws {
        let scene = try Scene()
        try Privileged.require(.tool("qemu-system-x86_64"), .fixture("vm-debian.raw"))
        let kernel = try #require(try FileManager.default.contentsOfDirectory(atPath: "/boot").sorted().last { $0.hasPrefix("vmlinuz-") })
        let version = kernel.dropFirst("vmlinuz-".count)
        let image = try #require(Fixtures.path("vm-debian.raw"))
        let r = try scene.host("""
            "$IMAGECTL" vm -x -q -i \(image) --linux=/boot/\(kernel) --initrd=/boot/initrd.img-\(version) --console=headless -M vmn -n &
            pid=$!
            for i in $(seq 150); do sleep 0.1; nft list ruleset | grep -q "elements = " && break; done
            ip -4 -o addr show vt-vmn | grep -o "inet [0-9./]*"
            echo "lease: $(cat "$IMAGECTL_RUNTIME_DIR/network/vt-vmn.dhcp-hosts")"
            echo "nic: $(ps -o args= -C qemu-system-x86_64 | grep -o 'ifname=vt-vmn[^ ]*mac=[0-9a-f:]*' | sed 's/.*mac=//')"
            kill -TERM $pid
            wait $pid
            \(Self.leftovers)
            """)
        #expect(r.stdout.contains("inet 10.232.0.1/28"), "\(r.stdout)\(r.stderr)")
        let lease = r.stdout.split(separator: "\n").first { $0.hasPrefix("lease: ") }?.dropFirst(7) ?? ""
        let nic = r.stdout.split(separator: "\n").first { $0.hasPrefix("nic: ") }?.dropFirst(5) ?? ""
        #expect(!nic.isEmpty && lease == "\(nic),10.232.0.2,vmn", "\(r.stdout)")
        #expect(r.stdout.contains("links: \n") && r.stdout.contains("rules: \n") && r.stdout.contains("records: \n"), "\(r.stdout)")
    }

    /// --network-namespace-path=: the container runs in that namespace as it is (with or without
    /// a user namespace); anything but a network namespace is refused with one line.
    @Test func networkNamespacePath() throws {
        let scene = try Scene()
        let r = try scene.host("""
            ip netns add side
            ip -n side link add sidelink type veth peer name sidepeer
            ip -n side addr add 10.77.7.1/24 dev sidelink
            "$IMAGECTL" run -q -D "$TREE" --network-namespace-path=/run/netns/side sh -c 'ip -o -4 addr show sidelink | grep -o "inet [0-9./]*"'
            echo "plain=$?"
            "$IMAGECTL" run -q -D "$TREE" -U --network-namespace-path=/run/netns/side sh -c 'ip -o link show sidelink >/dev/null && echo userns-sees-sidelink'
            echo "userns=$?"
            "$IMAGECTL" run -q -D "$TREE" --network-namespace-path=/proc/self/ns/mnt true
            echo "mnt=$?"
            ip netns del side
            """)
        #expect(r.stdout.contains("inet 10.77.7.1/24\nplain=0"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("userns-sees-sidelink\nuserns=0"))
        #expect(r.stdout.contains("mnt=1"))
        #expect(r.stderr == "error: cannot use /proc/self/ns/mnt: Invalid argument (not a network namespace)\n", "\(r.stderr)")
    }

    /// The .nspawn [Network] keys: honoured from a trusted file, ignored with a warning from an
    /// untrusted one (a file beside the tree).
    @Test func nspawnFileNetworkKeys() throws {
        let scene = try Scene()
        try "[Network]\nVirtualEthernet=yes\nPort=8086\nVirtualEthernetExtra=fx0:fx1\n"
            .write(toFile: scene.scratch.appending("tree.nspawn"), atomically: true, encoding: .utf8)
        let r = try scene.host("""
            "$IMAGECTL" run -q -D "$TREE" --settings=trusted sh -c 'ip -o link | cut -d: -f2 | tr -d " " | cut -d@ -f1 | sort | tr "\\n" " "; echo; ip -4 -o addr show host0'
            wait
            echo "---"
            "$IMAGECTL" run -q -D "$TREE" sh -c 'ip -o link | cut -d: -f2 | tr -d " " | sort | tr "\\n" " "'
            echo
            """)
        let parts = r.stdout.components(separatedBy: "---")
        #expect(parts.count == 2, "\(r.stdout)\(r.stderr)")
        #expect(parts[0].contains("fx1 host0 lo"), "\(r.stdout)\(r.stderr)")
        #expect(parts[0].contains("inet 10.232.0.2/28"))
        #expect(parts.count == 2 && parts[1].contains("eth0") == false && parts[1].contains("host0") == false, "\(r.stdout)")
        #expect(r.stderr.contains("ignoring [Network] settings: settings file"), "\(r.stderr)")
        #expect(r.stderr.contains("ignoring Port=: settings file"), "\(r.stderr)")
    }
}
