// swift-tools-version: 6.2
// imagectl: OS disk images on Linux (store, import, dissect, verity, container and VM runner).
// Dependencies come from the machine's package mirror by their GitHub URL; nothing is vendored.
import PackageDescription

/// System libraries found through pkg-config; the Debian package that provides each is named so
/// that `swift build` can say what to install.
func systemLibrary(_ name: String, pkgConfig: String, apt: [String]) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkgConfig, providers: [.apt(apt)])
}

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "imagectl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "imagectl", targets: ["imagectl"]),
        .library(name: "ImageStore", targets: ["ImageStore"]),
        .library(name: "Import", targets: ["Import"]),
        .library(name: "Dissect", targets: ["Dissect"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // 4.x: 3.12.3 freed an RSA public key twice when its DER did not parse (a certificate in a
        // verity signature is untrusted input; fuzz/corpus/verity-cms/regression-rsa-key-freed-twice).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Next minor only: Dissect uses its CMS API, which is SPI (@_spi(CMS)) and may change in
        // any minor release.
        .package(url: "https://github.com/apple/swift-certificates", .upToNextMinor(from: "1.21.1")),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        // C: ioctl numbers and syscall wrappers that Swift cannot import directly.
        .target(name: "CShims", path: "Sources/CShims"),
        systemLibrary("CBlkid", pkgConfig: "blkid", apt: ["libblkid-dev"]),
        // libcryptsetup and libcurl are loaded with dlopen on first use, not linked (each header
        // says why): their headers come from libcryptsetup-dev and libcurl4-openssl-dev. The
        // dlopen/dlsym step they share is CLibraryLoader.
        .target(name: "CLibraryLoader", path: "Sources/CLibraryLoader"),
        .target(name: "CCryptsetup", dependencies: ["CLibraryLoader"], path: "Sources/CCryptsetup"),
        .target(name: "CCurl", dependencies: ["CLibraryLoader"], path: "Sources/CCurl"),
        systemLibrary("CLZMA", pkgConfig: "liblzma", apt: ["liblzma-dev"]),
        systemLibrary("CArchive", pkgConfig: "libarchive", apt: ["libarchive-dev"]),
        systemLibrary("CBtrfsUtil", pkgConfig: "libbtrfsutil", apt: ["libbtrfsutil-dev"]),
        systemLibrary("CZlib", pkgConfig: "zlib", apt: ["zlib1g-dev"]),
        systemLibrary("CZstd", pkgConfig: "libzstd", apt: ["libzstd-dev"]),
        systemLibrary("CSeccomp", pkgConfig: "libseccomp", apt: ["libseccomp-dev"]),

        // Swift over the kernel: file descriptors, errno, loop devices, mounts, btrfs, locks.
        .target(
            name: "LinuxSystem",
            dependencies: [
                "CShims", "CBtrfsUtil",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // The progress bar / final line / JSON lines of every long operation.
        .target(
            name: "ProgressReport",
            dependencies: ["CShims"],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // The image pool: names, discovery, locks, clone/snapshot, side files, provenance.
        .target(
            name: "ImageStore",
            dependencies: [
                "LinuxSystem", "CArchive", "ProgressReport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Getting images into the store: decompressors, tar extraction, qcow2 conversion.
        .target(
            name: "Import",
            dependencies: [
                "LinuxSystem", "ImageStore", "ProgressReport", "CLZMA", "CArchive", "CZlib", "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Pulling images over http(s)/file with libcurl: checksums, signatures, resume, progress.
        .target(
            name: "Pull",
            dependencies: [
                "Import", "ImageStore", "LinuxSystem", "ProgressReport", "CCurl",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // From a disk image to a mount plan: GPT/MBR, blkid probing, verity.
        .target(
            name: "Dissect",
            dependencies: [
                "LinuxSystem", "CBlkid", "CCryptsetup", "CZlib", "CShims", "ProgressReport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Running machines, whatever runs them: the registry of running containers and VMs,
        // the console relay, signal names.
        .target(
            name: "Machines",
            dependencies: [
                "CShims", "LinuxSystem",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // rtnetlink from Swift: links, addresses, routes, moves between network namespaces.
        .target(
            name: "Netlink",
            dependencies: ["CShims", "LinuxSystem", .product(name: "SystemPackage", package: "swift-system")],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // The host side of a machine's networking: names, MACs, address pool, veth/bridge/zone
        // set-up, dnsmasq, nftables; the settings model of nspawn's networking options.
        .target(
            name: "Network",
            dependencies: ["CShims", "LinuxSystem", "Netlink"],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Running an image: the container runner (`imagectl run`).
        .target(
            name: "Runner",
            dependencies: [
                "LinuxSystem", "Dissect", "ImageStore", "Machines", "CShims", "CSeccomp", "Network",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // Running an image as a VM: VMSpec -> qemu command line -> qemu (`imagectl vm`). Apart
        // from Runner (the containers) so that it builds and is tested on its own; Machines
        // gives it the registry and the console relay that containers use too.
        .target(
            name: "VMRunner",
            dependencies: [
                "CShims", "LinuxSystem", "Dissect", "Machines", "CArchive",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "imagectl",
            dependencies: [
                "LinuxSystem", "ImageStore", "Import", "Pull", "Dissect", "Machines", "Runner", "VMRunner",
                "ProgressReport",
                "LinuxSystem", "ImageStore", "Import", "Pull", "Dissect", "Runner", "VMRunner", "Network",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // libFuzzer targets for the parsers of untrusted bytes (fuzz/README.md). scripts/fuzz.sh
        // builds it with -sanitize=fuzzer,address; a plain build replays inputs through a target.
        .executableTarget(
            name: "imagectl-fuzz",
            dependencies: ["Dissect", "Import", "LinuxSystem", "Pull", "Runner"],
            path: "fuzz/Sources/imagectl-fuzz",
            swiftSettings: strict
        ),

        // Shared test helpers: privileged-test gating, fixtures, running the CLI.
        .target(
            name: "TestSupport",
            dependencies: ["LinuxSystem"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(name: "ProgressReportTests", dependencies: ["ProgressReport"], swiftSettings: strict),
        .testTarget(name: "LinuxSystemTests", dependencies: ["LinuxSystem", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ImageStoreTests", dependencies: ["ImageStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ImportTests", dependencies: ["Import", "ImageStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "PullTests", dependencies: ["Pull", "Import", "ImageStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "DissectTests", dependencies: ["Dissect", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MachinesTests", dependencies: ["Machines", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "RunnerTests", dependencies: ["Runner", "Machines", "Network", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "NetworkTests", dependencies: ["Network", "Netlink", "CShims", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "VMRunnerTests", dependencies: ["VMRunner", "Machines", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "imagectlTests", dependencies: ["TestSupport", "imagectl"], swiftSettings: strict),
    ]
)
