#!/bin/bash
# Benchmark: `imagectl verify` against `veritysetup verify` on the same data (PERFORMANCE.md).
# Builds a data file (1 GiB, or 128 MiB with --quick) with 4 KiB blocks and sha256, formats it
# with veritysetup, then runs both verifiers alternately (A B A B ...) from the page cache and
# prints one line: job  imagectl_median  peer_median  ratio.
#
# Usage: scripts/bench-verity.sh [--quick] [--runs N] [--size MiB]
# IMAGECTL=/path/to/imagectl uses that binary; otherwise a release build is made in .build-bench.
set -euo pipefail

runs=5
size_mib=1024
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) size_mib=128; shift ;;
        --runs) runs="$2"; shift 2 ;;
        --size) size_mib="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${IMAGECTL:-}" ]; then
    echo "building imagectl (release) ..." >&2
    (cd "$repo" && swift build -c release --scratch-path .build-bench --product imagectl >&2)
    IMAGECTL="$repo/.build-bench/release/imagectl"
fi
if ! command -v veritysetup >/dev/null; then
    echo "veritysetup not installed (package cryptsetup-bin): peer skipped" >&2
    peer=0
else
    peer=1
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/bench-verity.XXXXXX")"
trap 'rm -rf "$work"' EXIT
data="$work/data.img"
hash="$work/data.img.verity"
echo "making ${size_mib} MiB of data ..." >&2
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$data"
if [ "$peer" = 1 ]; then
    root="$(veritysetup format "$data" "$hash" | awk '/^Root hash:/ {print $3}')"
else
    echo "cannot make a hash tree without veritysetup" >&2
    exit 1
fi
cat "$data" "$hash" > /dev/null   # both runs read from the page cache

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ours=()
theirs=()
for i in $(seq "$runs"); do
    t0=$(now)
    "$IMAGECTL" verify "$data" --verity-data="$hash" --root-hash="$root" > /dev/null
    t1=$(now)
    ours+=("$(elapsed "$t0" "$t1")")
    t0=$(now)
    veritysetup verify "$data" "$hash" "$root"
    t1=$(now)
    theirs+=("$(elapsed "$t0" "$t1")")
    echo "run $i: imagectl ${ours[-1]} s, veritysetup ${theirs[-1]} s" >&2
done
a=$(printf '%s\n' "${ours[@]}" | median)
b=$(printf '%s\n' "${theirs[@]}" | median)
printf '%-28s %-16s %-16s %s\n' job imagectl_median peer_median ratio
printf '%-28s %-16s %-16s %s\n' "verify ${size_mib}MiB 4K sha256" "${a}s" "${b}s" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
