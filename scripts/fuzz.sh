#!/usr/bin/env bash
# Builds each libFuzzer target in fuzz/ and runs it for N seconds (issue 16):
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default 10 s, every target)
#
# A target is fuzz/<name>/main.swift (defining LLVMFuzzerTestOneInput) compiled with the parser
# sources listed below by swiftc -sanitize=fuzzer,address; its seeds are fuzz/corpus/<name>/
# (small samples cut from the fixtures, kept in the repository). Runs work on a copy of the
# seeds, so the repository's corpus does not grow. Prints one line per target:
#   TARGET RUNS CRASHES
# and exits 1 on a crash, keeping the crashing input in fuzz/crashes/<target>/ (to become a
# regression test).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
SECONDS_PER_TARGET=10
if [ "${1:-}" = --seconds ]; then SECONDS_PER_TARGET=${2:?--seconds needs a number}; shift 2; fi
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "error: --seconds needs a number" >&2; exit 2 ;; esac

S=Sources
# Target -> the sources it is built from (only what the parser needs: the harness calls the
# parser directly, not through the modules, so no C library but zlib is linked).
declare -A SOURCES=(
  [gpt-mbr]="$S/Dissect/GPT.swift $S/Dissect/MBR.swift $S/Dissect/RandomAccessSource.swift"
  [sha256sums]="$S/Pull/Checksums.swift $S/Pull/PullError.swift"
)
declare -A FLAGS=(
  [gpt-mbr]="-I $S/CZlib"
  [sha256sums]=""
)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gpt-mbr sha256sums)

BUILD=.build/fuzz
mkdir -p "$BUILD"
status=0
printf '%-12s %10s %8s\n' TARGET RUNS CRASHES
for target in "${TARGETS[@]}"; do
  [ -n "${SOURCES[$target]:-}" ] || { echo "error: no fuzz target '$target'" >&2; exit 2; }
  # shellcheck disable=SC2086
  if ! swiftc -sanitize=fuzzer,address -parse-as-library -module-name "Fuzz${target//-/}" ${FLAGS[$target]} \
       ${SOURCES[$target]} "fuzz/$target/main.swift" -o "$BUILD/$target" 2> "$BUILD/$target.build.log"; then
    echo "error: building $target failed:" >&2; grep -v 'ld.gold: warning' "$BUILD/$target.build.log" >&2
    exit 2
  fi
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$target/." "$work/"
  crashes=fuzz/crashes/$target
  mkdir -p "$crashes"
  before=$(find "$crashes" -type f | wc -l)
  "$BUILD/$target" -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 \
    -artifact_prefix="$crashes/" "$work" > "$BUILD/$target.log" 2>&1
  rc=$?
  rm -rf "$work"
  runs=$(grep -o 'Done [0-9]* runs' "$BUILD/$target.log" | awk '{print $2}')
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$BUILD/$target.log" | tail -1 | tr -d '#')
  found=$(( $(find "$crashes" -type f | wc -l) - before ))
  [ "$rc" -ne 0 ] && [ "$found" -eq 0 ] && found=1  # died without an artifact: still a failure
  printf '%-12s %10s %8d\n' "$target" "${runs:-0}" "$found"
  if [ "$found" -gt 0 ]; then
    status=1
    echo "note: $target crashed; input kept in $crashes/, log in $BUILD/$target.log" >&2
  else
    rmdir "$crashes" 2>/dev/null
  fi
done
rmdir fuzz/crashes 2>/dev/null
exit $status
