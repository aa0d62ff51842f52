#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine, as root:
#
#   scripts/test.sh [swift test options, e.g. --filter ImportTests]
#
# Installs the dependencies (scripts/install-deps.sh), builds the test fixtures (cached in
# $IMAGECTL_FIXTURES, default /var/cache/imagectl-fixtures; a few minutes the first time,
# seconds after), builds the package and its tests (debug, .build), then runs `swift test`.
# Without arguments it then runs each fuzz target for 10 seconds (scripts/fuzz.sh). The exit
# status is swift test's, or the fuzzer's when a target crashed. Privileged tests skip with a reason when not root or when a facility is
# missing; IMAGECTL_REQUIRE_PRIVILEGED=1 (set by .ci/run) turns those skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

phase() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

if [ "$(id -u)" = 0 ]; then
  phase "dependencies"
  scripts/install-deps.sh
  phase "fixtures"
  fixtures/build.sh
else
  echo "note: not root: dependencies and fixtures not installed; privileged tests will be skipped" >&2
fi
command -v swift >/dev/null || { echo "error: swift not found (expected /opt/swift/usr/bin/swift)" >&2; exit 1; }
phase "build ($(swift --version 2>/dev/null | head -n1))"
swift build --build-tests
# The generate-manual plugin builds its tool beside imagectl, where the man page test runs it.
phase "man page tool"
swift package generate-manual --configuration debug >/dev/null
phase "tests"
if [ $# -gt 0 ]; then exec swift test --skip-build "$@"; fi
swift test --skip-build
phase "fuzz targets, 10 s each"
scripts/fuzz.sh --seconds 10
