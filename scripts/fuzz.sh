#!/usr/bin/env bash
# Builds the libFuzzer targets (issue 16) and runs each for N seconds:
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default 10 s, every target)
#
# The targets live in one executable, fuzz/Sources/imagectl-fuzz (a target of Package.swift),
# which calls the parsers through their modules. It is built by SwiftPM in its own scratch
# directory (.build/fuzz) with libFuzzer's coverage on every module and AddressSanitizer on the
# Swift code (--sanitize=fuzzer, -sanitize=fuzzer,address), and -DIMAGECTL_FUZZ, which makes it a
# libFuzzer binary; $IMAGECTL_FUZZ_TARGET picks the target. Seeds are fuzz/corpus/<target>/
# (small samples cut from the fixtures, kept in the repository); runs work on a copy, so the
# repository's corpus does not grow. Prints one line per target:
#   TARGET RUNS CRASHES
# and exits 1 on a crash, keeping the crashing input in fuzz/crashes/<target>/ (to become a
# regression test; `swift build` then `.build/debug/imagectl-fuzz TARGET FILE` replays it).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
SECONDS_PER_TARGET=10
if [ "${1:-}" = --seconds ]; then SECONDS_PER_TARGET=${2:?--seconds needs a number}; shift 2; fi
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "error: --seconds needs a number" >&2; exit 2 ;; esac

BUILD=.build/fuzz
mkdir -p "$BUILD"
# Dead stripping is off: the linker would drop the coverage counters' sections otherwise.
started=$(date +%s)
if ! swift build --product imagectl-fuzz --scratch-path "$BUILD" --disable-dead-strip \
     --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -DIMAGECTL_FUZZ > "$BUILD/build.log" 2>&1; then
  echo "error: building the fuzz targets failed:" >&2; grep -E 'error|warning: unre' "$BUILD/build.log" >&2
  exit 2
fi
echo "note: fuzz targets built in $(( $(date +%s) - started )) s" >&2
BINARY=$BUILD/debug/imagectl-fuzz
# Every target has a corpus directory (the binary refuses a name it does not know).
mapfile -t ALL < <(ls fuzz/corpus)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

status=0
printf '%-18s %10s %8s\n' TARGET RUNS CRASHES
for target in "${TARGETS[@]}"; do
  [ -d "fuzz/corpus/$target" ] || { echo "error: no fuzz target '$target' (fuzz/corpus/$target)" >&2; exit 2; }
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$work/"
  crashes=fuzz/crashes/$target
  mkdir -p "$crashes"
  before=$(find "$crashes" -type f | wc -l)
  # The Swift runtime's backtracer would catch a trap before libFuzzer does (and can hang the
  # run): off, so that libFuzzer reports the crash and writes the input.
  IMAGECTL_FUZZ_TARGET=$target SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 \
    "$BINARY" -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$crashes/" "$work" > "$BUILD/$target.log" 2>&1
  rc=$?
  rm -rf "$work"
  runs=$(grep -o 'Done [0-9]* runs' "$BUILD/$target.log" | awk '{print $2}')
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$BUILD/$target.log" | tail -1 | tr -d '#')
  found=$(( $(find "$crashes" -type f | wc -l) - before ))
  [ "$rc" -ne 0 ] && [ "$found" -eq 0 ] && found=1  # died without an artifact: still a failure
  printf '%-18s %10s %8d\n' "$target" "${runs:-0}" "$found"
  if [ "$found" -gt 0 ]; then
    status=1
    echo "note: $target crashed; input kept in $crashes/, log in $BUILD/$target.log" >&2
  else
    rmdir "$crashes" 2>/dev/null
  fi
done
rmdir fuzz/crashes 2>/dev/null
exit $status
