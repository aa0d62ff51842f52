#!/usr/bin/env bash
# A tour of imagectl on a fresh Debian 12 machine, as root:
#
#   scripts/demo.sh
#
# Installs the dependencies (scripts/install-deps.sh), builds imagectl (a DEBUG build in .build,
# the same one scripts/test.sh uses), builds small demo images with Debian tools
# (fixtures/build.sh: a busybox tree, its tar.xz, a verity-protected GPT image), and then, in a
# throw-away pool under /var/tmp/imagectl-demo (never /var/lib/machines), tours the verbs: import,
# list, show, clone, remove, dissect, verify, mount, and run (boot the image in a container).
# Each command is printed before it runs. Exits non-zero as soon as a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it installs packages and builds images)" >&2; exit 1; }

DEMO=${IMAGECTL_DEMO_DIR:-/var/tmp/imagectl-demo}
FIX=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
export PATH="/opt/swift/usr/bin:$PATH"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Prints a command the way a reader would type it, then runs it.
run() {
    printf '$'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}

step "Dependencies (Debian packages)"
run scripts/install-deps.sh

# IMAGECTL_SCRATCH picks another build directory (default .build, shared with scripts/test.sh).
SCRATCH=${IMAGECTL_SCRATCH:-.build}
step "Build imagectl (debug build, $SCRATCH/debug/imagectl)"
run swift build --scratch-path "$SCRATCH" --product imagectl
BIN_DIR=$(swift build --scratch-path "$SCRATCH" --show-bin-path)
IMAGECTL=$BIN_DIR/imagectl
# The tour calls it as `imagectl`, as a user with it on PATH would.
export PATH="$BIN_DIR:$PATH"
run imagectl --version

step "Demo images from Debian tools (cached in $FIX)"
run fixtures/build.sh busybox-tree busybox.tar.xz gpt-verity-signed.raw gpt-verity.raw
TAR=$FIX/busybox.tar.xz
RAW=$FIX/gpt-verity-signed.raw

step "A throw-away pool: $DEMO/pool (IMAGECTL_ROOT; the default pool is /var/lib/machines)"
rm -rf "$DEMO"
mkdir -p "$DEMO"
export IMAGECTL_ROOT=$DEMO/pool
echo "\$ export IMAGECTL_ROOT=$IMAGECTL_ROOT"

step "Import a tar.xz of the busybox tree as image 'demo'"
run imagectl import-tar "$TAR" demo

step "Import a signed verity GPT image as 'demo-raw'"
run imagectl import-raw "$RAW" demo-raw

step "List the pool, show one image"
run imagectl list
run imagectl show demo

step "Clone it, look, remove the clone"
run imagectl clone demo demo-copy
run imagectl list
run imagectl remove demo-copy

step "Dissect the raw image (partitions, filesystems, verity, OS release)"
run imagectl dissect demo-raw
run imagectl dissect --json demo-raw

step "Verify the whole dm-verity hash tree in userspace, and the root hash signature"
# The image was signed with the fixtures' self-signed test certificate: trust it for the demo in
# a keyring of its own (the default keyring is /etc/verity.d).
mkdir -p "$DEMO/keyring"
cp "$FIX/verity-cert.pem" "$DEMO/keyring/"
run imagectl verify demo-raw --verity-keyring "$DEMO/keyring"
step "An image without a signature partition: the root hash is given on the command line"
run imagectl verify "$FIX/gpt-verity.raw" --root-hash "$(cat "$FIX/gpt-verity.roothash.txt")"

step "Mount the verity image (verified first, then mounted read-only), look inside, unmount"
run imagectl mount demo-raw "$DEMO/mnt" --mkdir --verity-keyring "$DEMO/keyring"
run cat "$DEMO/mnt/etc/os-release"
run imagectl umount "$DEMO/mnt" --rmdir

step "Run a command in the verity disk image as a container (dissected, verified, read-only root)"
run imagectl run -M demo-raw --verity-keyring "$DEMO/keyring" /bin/sh -c \
    '. /etc/os-release; echo "$PRETTY_NAME in container $(hostname)"; touch /x 2>/dev/null || echo "the root is read-only"'

step "Boot the imported tree in a container (-x: ephemeral, the image stays unchanged)"
run imagectl run -D "$IMAGECTL_ROOT/demo" -x --hostname=demo-box /bin/sh -c \
    '. /etc/os-release; echo "hello from $PRETTY_NAME, PID $$, hostname $(hostname)"; touch /scribble'
run test ! -e "$IMAGECTL_ROOT/demo/scribble"

step "Done. The demo pool is $IMAGECTL_ROOT (remove it with: rm -rf $DEMO)"
