#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine, as root:
#
#   scripts/test.sh [swift test options, e.g. --filter ImportTests]
#
# Installs the dependencies (scripts/install-deps.sh), builds the test fixtures (cached in
# $IMAGECTL_FIXTURES, default /var/cache/imagectl-fixtures; a few minutes the first time,
# seconds after), builds the package and its tests (debug, .build), then runs `swift test`.
# The output ends with swift test's summaries (XCTest, then Swift Testing) and the exit status
# is swift test's. Privileged tests skip with a reason when not root or when a facility is
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
phase "tests"
exec swift test --skip-build "$@"
