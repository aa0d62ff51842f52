#!/usr/bin/env bash
# Benchmarks imagectl against its peer tools on the same inputs, on this machine, in the same run.
# Not part of the tests. Run as root from the repository:
#
#   scripts/bench.sh [--quick] [--rounds N] [--keep]
#
# Builds a release imagectl (swift build -c release --scratch-path .build-release) and the inputs
# (fixtures/build.sh multiblock.raw.xz debian.tar.xz), then runs each job imagectl, peer,
# imagectl, peer, ... (5 rounds, 3 with --quick) under the same conditions (same input file,
# already in the page cache after a warm-up read, result written to a fresh pool directory on the
# same filesystem, pool removed and `sync` run between runs outside the timed region) and prints
#
#   job  imagectl_median  peer_median  ratio
#
# plus the allocated bytes (du -B1) of the last result of each tool. A peer that is not
# installed is skipped with a note. The peer runs with --sync=no, as PERFORMANCE.md measures it.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) rounds=3 ;;
        --rounds) rounds=$2; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (imports write device nodes and owners)" >&2; exit 1; }

export PATH="/opt/swift/usr/bin:$PATH"
FIX=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
WORK=${IMAGECTL_BENCH_DIR:-/var/tmp/imagectl-bench}
PEER_IMPORT=/lib/systemd/systemd-import

echo "bench: building imagectl (release, .build-release)"
swift build -c release --scratch-path .build-release --product imagectl >"$WORK.build.log" 2>&1 \
    || { tail -n 30 "$WORK.build.log" >&2; exit 1; }
IMAGECTL=$(swift build -c release --scratch-path .build-release --show-bin-path)/imagectl
echo "bench: building inputs (fixtures/build.sh)"
fixtures/build.sh multiblock.raw.xz debian.tar.xz >/dev/null

rm -rf "$WORK"
mkdir -p "$WORK"
[ "$keep" = 1 ] || trap 'rm -rf "$WORK"' EXIT

has_verb() { "$IMAGECTL" help 2>/dev/null | grep -Eq "^  $1( |$)"; }

# Prints the wall-clock seconds a command took; its output goes to $WORK/last.log.
timed() {
    local start end
    start=$EPOCHREALTIME
    "$@" >"$WORK/last.log" 2>&1 || { echo "bench: failed: $*" >&2; tail -n 5 "$WORK/last.log" >&2; exit 1; }
    end=$EPOCHREALTIME
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

fresh_pool() { rm -rf "$1"; mkdir -p "$1"; sync; }

LINES=()
NOTES=()

# job NAME RESULT OURS PEER: OURS and PEER are command strings run by bash with $POOL set to a
# fresh pool directory; PEER may be empty. RESULT (a path inside the pool, or -) is measured
# with du -B1 after the last round.
job() {
    local name=$1 result=$2 ours=$3 peer=$4
    local ours_times=() peer_times=() i t
    for ((i = 0; i < rounds; i++)); do
        fresh_pool "$WORK/ours"
        t=$(timed env POOL="$WORK/ours" bash -c "$ours"); ours_times+=("$t")
        if [ -n "$peer" ]; then
            fresh_pool "$WORK/peer"
            t=$(timed env POOL="$WORK/peer" bash -c "$peer"); peer_times+=("$t")
        fi
    done
    local om pm ratio ob pb
    om=$(median "${ours_times[@]}")
    ob=-
    [ "$result" = - ] || ob=$(du -s -B1 "$WORK/ours/$result" | cut -f1)
    if [ -n "$peer" ]; then
        pm=$(median "${peer_times[@]}")
        pb=$(du -s -B1 "$WORK/peer/$result" | cut -f1)
        ratio=$(awk -v a="$om" -v b="$pm" 'BEGIN { printf "%.2f", a / b }')
    else
        pm="-"; pb="-"; ratio="-"
    fi
    [ "$pm" = - ] || pm="${pm}s"
    LINES+=("$(printf '%-18s %10ss %11s %6s   allocated: imagectl %s, peer %s' "$name" "$om" "$pm" "$ratio" "$ob" "$pb")")
    echo "  $name: imagectl ${ours_times[*]} / peer ${peer_times[*]:-(none)}"
}

RAW=$FIX/multiblock.raw.xz
TAR=$FIX/debian.tar.xz
# Warm the page cache for both inputs so neither tool pays the first read.
cat "$RAW" "$TAR" >/dev/null
echo "bench: $rounds rounds, inputs $(du -h "$RAW" | cut -f1) $RAW ($(xz --robot -l "$RAW" | awk '$1=="file"{print $3}') xz blocks), $(du -h "$TAR" | cut -f1) $TAR"

peer_ok=1
if [ ! -x "$PEER_IMPORT" ]; then
    peer_ok=0
    NOTES+=("systemd-import not installed ($PEER_IMPORT; package systemd-container): peer columns skipped")
fi
peer_cmd() { [ "$peer_ok" = 1 ] && echo "$1" || echo ""; }

if has_verb import-raw; then
    job "import raw.xz" bench.raw \
        "IMAGECTL_ROOT=\"\$POOL\" \"$IMAGECTL\" import-raw \"$RAW\" bench" \
        "$(peer_cmd "\"$PEER_IMPORT\" raw \"$RAW\" bench --image-root=\"\$POOL\" --sync=no")"
else
    NOTES+=("imagectl has no import-raw verb yet: job 'import raw.xz' skipped")
fi
if has_verb import-tar; then
    job "import tar.xz" bench \
        "IMAGECTL_ROOT=\"\$POOL\" \"$IMAGECTL\" import-tar \"$TAR\" bench" \
        "$(peer_cmd "\"$PEER_IMPORT\" tar \"$TAR\" bench --image-root=\"\$POOL\" --sync=no")"
else
    NOTES+=("imagectl has no import-tar verb yet: job 'import tar.xz' skipped")
fi
# The floor for import raw.xz: decoding alone with xz's own threads, for orientation.
job "xz -d -T2 (floor)" - \
    "xz -d -T2 -c \"$RAW\" >/dev/null" ""

echo
printf '%-18s %11s %11s %6s\n' job imagectl_median peer_median ratio
printf '%s\n' "${LINES[@]}"
for n in "${NOTES[@]}"; do echo "note: $n"; done
