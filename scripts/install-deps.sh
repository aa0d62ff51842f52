#!/usr/bin/env bash
# Installs the Debian packages imagectl builds against and its tests and demo use.
# Idempotent: only missing packages are installed. Needs root (apt-get).
set -euo pipefail

packages=(
  # C libraries the Swift package links (pkg-config names in Package.swift)
  pkg-config libblkid-dev libcryptsetup-dev libdevmapper-dev liblzma-dev libarchive-dev
  libbtrfsutil-dev libseccomp-dev zlib1g-dev libzstd-dev libacl1-dev libattr1-dev
  # pull: libcurl (as systemd-pull uses), gpgv for signatures
  libcurl4-openssl-dev gpgv
  # tools the fixtures, tests and peers use
  systemd-container cryptsetup-bin qemu-utils debootstrap xz-utils zstd bzip2 gzip
  btrfs-progs busybox-static fdisk e2fsprogs squashfs-tools erofs-utils dosfstools
  attr acl kmod util-linux python3 xfsprogs mtools openssl systemd
  # container networking: dnsmasq (DHCP and DNS per veth or zone), nft (NAT and port forwards),
  # and iproute2/busybox for the tests that look at links from inside
  dnsmasq-base nftables iproute2
  # pull-oci/push-oci tests: a local distribution registry (started by the tests on 127.0.0.1),
  # skopeo to put images into it and copy them back, umoci to build and unpack OCI layouts
  docker-registry skopeo umoci
  # imagectl run/shell console tests: a terminal (tmux) to drive the pty relay
  tmux
  # the man page test renders it (man -l)
  man-db groff-base
  # imagectl vm: qemu, a Debian kernel+initrd for direct boot, UEFI firmware (descriptors in
  # /usr/share/qemu/firmware), ssh-keygen for --pass-ssh-key, systemd-boot for the ESP fixture,
  # swtpm for --tpm
  qemu-system-x86 linux-image-amd64 ovmf openssh-client systemd-boot-efi swtpm swtpm-tools
  # what the Swift toolchain (installed separately under /opt/swift) needs at build time
  binutils gcc git libc6-dev libedit2 libgcc-12-dev libpython3-dev libsqlite3-0
  libstdc++-12-dev libxml2-dev libz3-dev tzdata unzip
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# btrfs is a module on Debian's kernels; loading it may fail in a container, which tests report.
modprobe btrfs 2>/dev/null || true
modprobe loop 2>/dev/null || true
# The Swift toolchain is not a Debian package: it is expected under /opt/swift (or on PATH).
if ! command -v swift >/dev/null && [ ! -x /opt/swift/usr/bin/swift ]; then
  echo "error: no Swift toolchain: install Swift 6 from swift.org into /opt/swift (or put swift on PATH)" >&2
  exit 1
fi
