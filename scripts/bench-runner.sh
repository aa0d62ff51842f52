#!/bin/bash
# Container start and boot times of `imagectl run` against systemd-nspawn, measured A B A B
# (alternating, so load changes hit both alike), medians printed with the ratio.
#   scripts/bench-runner.sh [IMAGECTL] [ROUNDS]
# Needs root, the busybox-tree and debian-tree fixtures, and systemd-nspawn. Works on copies in a
# scratch directory (the fixtures are read-only).
set -euo pipefail
IMAGECTL=${1:-.build/release/imagectl}
ROUNDS=${2:-10}
FIXTURES=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
SCRATCH=$(mktemp -d /var/tmp/bench-runner.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
cp -a "$FIXTURES/busybox-tree" "$SCRATCH/bb"
# nspawn -U chowns the tree it runs: its own copy, so imagectl's stays unshifted (ID-mapped).
cp -a "$FIXTURES/busybox-tree" "$SCRATCH/bb-nspawn-U"
cp -a "$FIXTURES/debian-tree" "$SCRATCH/deb"
NSPAWN=(systemd-nspawn -q --register=no --keep-unit)

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# measure NAME ROUNDS -- A... -- B...  (A is imagectl, B its peer; LABEL_A/LABEL_B rename them)
measure() {
    local name=$1 rounds=$2; shift 3
    local la=${LABEL_A:-imagectl} lb=${LABEL_B:-nspawn}
    local a=() b=()
    while [ "$1" != "--" ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    : > "$SCRATCH/a"; : > "$SCRATCH/b"
    for _ in $(seq "$rounds"); do
        t=$(now); "${a[@]}" >/dev/null 2>&1 || echo "$la failed: $?" >&2; echo $(( $(now) - t )) >> "$SCRATCH/a"
        t=$(now); "${b[@]}" >/dev/null 2>&1 || echo "$lb failed: $?" >&2; echo $(( $(now) - t )) >> "$SCRATCH/b"
    done
    ma=$(median < "$SCRATCH/a"); mb=$(median < "$SCRATCH/b")
    awk -v n="$name" -v a="$ma" -v b="$mb" -v r="$rounds" -v la="$la" -v lb="$lb" \
        'BEGIN {printf "%-10s %s %8.1f ms   %s %8.1f ms   ratio %.3f   (median of %d)\n", n, la, a/1e6, lb, b/1e6, a/b, r}'
}

measure start "$ROUNDS" -- "$IMAGECTL" run -q -D "$SCRATCH/bb" /bin/true -- "${NSPAWN[@]}" -D "$SCRATCH/bb" /bin/true
measure boot "$((ROUNDS / 2 > 0 ? ROUNDS / 2 : 1))" -- "$IMAGECTL" run -q -D "$SCRATCH/deb" -b systemd.unit=poweroff.target \
    -- "${NSPAWN[@]}" -D "$SCRATCH/deb" -b systemd.unit=poweroff.target
measure ephemeral 3 -- "$IMAGECTL" run -q -x -D "$SCRATCH/deb" /bin/true -- "${NSPAWN[@]}" -x -D "$SCRATCH/deb" /bin/true
# The default start has a user namespace (picked range, ID-mapped root): against nspawn -U, and
# against imagectl's own start without one (what the user namespace costs).
measure start-U "$ROUNDS" -- "$IMAGECTL" run -q -D "$SCRATCH/bb" /bin/true -- "${NSPAWN[@]}" -U -D "$SCRATCH/bb-nspawn-U" /bin/true
LABEL_B="imagectl --private-users=no" \
    measure userns "$ROUNDS" -- "$IMAGECTL" run -q -D "$SCRATCH/bb" /bin/true -- "$IMAGECTL" run -q --private-users=no -D "$SCRATCH/bb" /bin/true
# Networking (-n against nspawn --network-veth), each start in a network namespace of its own made
# by unshare, which stands in for the host: the veth, dnsmasq and nftables rules go there, never
# into this machine's namespace. imagectl does more (a /28, DHCP and DNS, NAT); "network" is what
# -n adds to imagectl's own start.
in_netns() { unshare --net --mount sh -c 'ip link set lo up; exec "$@"' sh "$@"; }
measure start-n "$ROUNDS" -- in_netns "$IMAGECTL" run -q -n -D "$SCRATCH/bb" /bin/true \
    -- in_netns "${NSPAWN[@]}" --network-veth -D "$SCRATCH/bb" /bin/true
LABEL_A="imagectl -n" LABEL_B="imagectl" \
    measure network "$ROUNDS" -- in_netns "$IMAGECTL" run -q -n -D "$SCRATCH/bb" /bin/true -- in_netns "$IMAGECTL" run -q -D "$SCRATCH/bb" /bin/true
