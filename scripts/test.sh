#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian 12 machine: installs dependencies, builds the test
# fixtures (cached in $IMAGECTL_FIXTURES, default /var/cache/imagectl-fixtures), then `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  scripts/install-deps.sh
  fixtures/build.sh
else
  echo "note: not root: privileged tests will be skipped" >&2
fi
export PATH="/opt/swift/usr/bin:$PATH"
swift build --build-tests
swift test --skip-build "$@"
