#!/usr/bin/env bash
# Installs the Debian packages imagectl builds against and its tests and demo use.
# Idempotent: only missing packages are installed. Needs root (apt-get).
set -euo pipefail

packages=(
  # C libraries the Swift package links (pkg-config names in Package.swift)
  pkg-config libblkid-dev libcryptsetup-dev libdevmapper-dev liblzma-dev libarchive-dev
  libbtrfsutil-dev libseccomp-dev zlib1g-dev libzstd-dev libacl1-dev libattr1-dev
  # tools the fixtures, tests and peers use
  systemd-container cryptsetup-bin qemu-utils debootstrap xz-utils zstd bzip2 gzip
  btrfs-progs busybox-static fdisk e2fsprogs squashfs-tools erofs-utils dosfstools
  attr acl kmod util-linux python3 xfsprogs mtools openssl systemd
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
