#!/usr/bin/env bash
# Benchmarks `imagectl pull-oci` against `skopeo copy` to an OCI layout plus `umoci unpack`, on
# the Debian fixture tree as a two-layer image (everything but /usr/share, then /usr/share) in a
# local docker-registry on 127.0.0.1, in the same run. Not a test.
#
#   scripts/bench-oci.sh [--rounds N] [--debug] [--no-build]
#
# Runs imagectl, skopeo+umoci, imagectl, ... (A B A B; 3 rounds by default), each into fresh
# directories (imagectl with an empty layer cache; removed, and `sync` run, outside the timed
# region), and prints the median wall-clock seconds of each and the ratio imagectl/peer.
# Release build (.build-oci-release) unless --debug, which uses the worktree's debug build and
# says so; --no-build uses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
mode=release
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift ;;
        --debug) mode=debug ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-oci: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "bench-oci: run as root" >&2; exit 1; }
for tool in docker-registry skopeo umoci; do
    command -v "$tool" >/dev/null || { echo "bench-oci: $tool is not installed (scripts/install-deps.sh)" >&2; exit 1; }
done

export PATH="/opt/swift/usr/bin:$PATH"
FIX=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
WORK=${IMAGECTL_BENCH_DIR:-/var/tmp/imagectl-bench-oci}

if [ "$mode" = release ]; then
    scratch=.build-oci-release
    if [ "$build" = 1 ]; then
        swift build -c release --scratch-path "$scratch" --product imagectl >"/tmp/bench-oci.build.log" 2>&1 \
            || { tail -n 30 /tmp/bench-oci.build.log >&2; exit 1; }
    fi
    IMAGECTL=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/imagectl
else
    IMAGECTL=$(swift build --show-bin-path)/imagectl
fi
[ -d "$FIX/debian-tree" ] || fixtures/build.sh debian-tree >/dev/null

rm -rf "$WORK"
mkdir -p "$WORK"
cat > "$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/storage
http:
  addr: 127.0.0.1:0
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null; rm -rf "$WORK"' EXIT
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/registry.log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "bench-oci: docker-registry did not start" >&2; cat "$WORK/registry.log" >&2; exit 1; }

# The two-layer image, built once (the fixture tree is copied, never changed).
echo "building the two-layer Debian image (umoci, gzip layers)..."
umoci init --layout "$WORK/layout"
umoci new --image "$WORK/layout:debian"
umoci unpack --image "$WORK/layout:debian" "$WORK/bundle" >/dev/null
cp -a "$FIX/debian-tree/." "$WORK/bundle/rootfs/"
rm -rf "$WORK/bundle/rootfs/usr/share"
umoci repack --image "$WORK/layout:debian" "$WORK/bundle"
rm -rf "$WORK/bundle"
umoci unpack --image "$WORK/layout:debian" "$WORK/bundle" >/dev/null
cp -a "$FIX/debian-tree/usr/share" "$WORK/bundle/rootfs/usr/"
umoci repack --image "$WORK/layout:debian" "$WORK/bundle"
rm -rf "$WORK/bundle" "$WORK/layout.tmp"
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/layout:debian" "docker://127.0.0.1:$port/bench/debian:latest"
layers=$(ls "$WORK/layout/blobs/sha256" | wc -l)

timed() {
    local start end
    start=$EPOCHREALTIME
    "$@" >"$WORK/last.log" 2>&1 || { echo "bench-oci: failed: $*" >&2; tail -n 5 "$WORK/last.log" >&2; exit 1; }
    end=$EPOCHREALTIME
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}
fresh() { rm -rf "$WORK/root" "$WORK/peer"; mkdir -p "$WORK/root" "$WORK/peer"; sync; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
peer() {
    skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/debian:latest" "oci:$WORK/peer/layout:debian" \
        && umoci unpack --image "$WORK/peer/layout:debian" "$WORK/peer/bundle"
}

a=()
b=()
for round in $(seq "$rounds"); do
    fresh
    a+=("$(timed env IMAGECTL_ROOT="$WORK/root" "$IMAGECTL" pull-oci "http://127.0.0.1:$port/bench/debian:latest" bench)")
    fresh
    b+=("$(timed peer)")
    echo "round $round: imagectl ${a[-1]} s, skopeo+umoci ${b[-1]} s"
done
ma=$(printf '%s\n' "${a[@]}" | median)
mb=$(printf '%s\n' "${b[@]}" | median)
echo "image: debian-tree as 2 gzip layers ($(du -sb "$WORK/layout/blobs" | cut -f1) bytes of blobs, $layers blobs), build: $mode, rounds: $rounds"
printf 'pull-oci  imagectl %s s  skopeo copy + umoci unpack %s s  ratio %s\n' "$ma" "$mb" \
    "$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", a / b }')"
