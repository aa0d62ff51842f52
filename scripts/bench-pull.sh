#!/usr/bin/env bash
# Benchmarks `imagectl pull-raw --verify=checksum` against systemd-pull on the same file from the
# same local server (fixtures/test-http-server.py on 127.0.0.1), in the same run. Not a test.
#
#   scripts/bench-pull.sh [--rounds N] [--debug] [--no-build] [--file NAME]
#
# Runs imagectl, systemd-pull, imagectl, systemd-pull, ... (A B A B; 3 rounds by default), each
# into a fresh image root (removed, and `sync` run, outside the timed region, so neither tool gets
# a cache hit), and prints the median wall-clock seconds of each and the ratio imagectl/peer.
# Default input: multiblock.raw.xz (fixtures/build.sh). Release build (.build-pull-release) unless
# --debug, which uses the debug build in .build-pull and says so; --no-build uses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
mode=release
build=1
file=multiblock.raw.xz
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift ;;
        --debug) mode=debug ;;
        --no-build) build=0 ;;
        --file) file=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-pull: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "bench-pull: run as root" >&2; exit 1; }

export PATH="/opt/swift/usr/bin:$PATH"
FIX=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
WORK=${IMAGECTL_BENCH_DIR:-/var/tmp/imagectl-bench-pull}
PEER=/lib/systemd/systemd-pull
[ -x "$PEER" ] || { echo "bench-pull: $PEER is not installed" >&2; exit 1; }

if [ "$mode" = release ]; then
    scratch=.build-pull-release
    if [ "$build" = 1 ]; then
        swift build -c release --scratch-path "$scratch" --product imagectl >"/tmp/bench-pull.build.log" 2>&1 \
            || { tail -n 30 /tmp/bench-pull.build.log >&2; exit 1; }
    fi
    IMAGECTL=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/imagectl
else
    IMAGECTL=$(swift build --scratch-path .build-pull --show-bin-path)/imagectl
fi
[ -f "$FIX/$file" ] || fixtures/build.sh "$file" >/dev/null

rm -rf "$WORK"
mkdir -p "$WORK/srv"
cp "$FIX/$file" "$WORK/srv/"
(cd "$WORK/srv" && sha256sum "$file" > SHA256SUMS)
cat "$WORK/srv/$file" > /dev/null   # into the page cache for both

python3 fixtures/test-http-server.py --dir "$WORK/srv" >"$WORK/port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do grep -q PORT "$WORK/port" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$(awk '{print $2}' "$WORK/port")/$file"

timed() {
    local start end
    start=$EPOCHREALTIME
    "$@" >"$WORK/last.log" 2>&1 || { echo "bench-pull: failed: $*" >&2; tail -n 5 "$WORK/last.log" >&2; exit 1; }
    end=$EPOCHREALTIME
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}
fresh() { rm -rf "$WORK/root"; mkdir -p "$WORK/root"; sync; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

a=()
b=()
for round in $(seq "$rounds"); do
    fresh
    a+=("$(timed env IMAGECTL_ROOT="$WORK/root" "$IMAGECTL" pull-raw --verify=checksum "$url" bench)")
    fresh
    b+=("$(timed "$PEER" raw --verify=checksum --image-root="$WORK/root" "$url" bench)")
    echo "round $round: imagectl ${a[-1]} s, systemd-pull ${b[-1]} s"
done
ma=$(printf '%s\n' "${a[@]}" | median)
mb=$(printf '%s\n' "${b[@]}" | median)
echo "file: $file ($(stat -c %s "$WORK/srv/$file") bytes), build: $mode, rounds: $rounds"
printf 'pull-raw --verify=checksum  imagectl %s s  systemd-pull %s s  ratio %s\n' "$ma" "$mb" \
    "$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", a / b }')"
