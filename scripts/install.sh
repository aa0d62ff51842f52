#!/usr/bin/env bash
# Builds imagectl in release mode and installs it with its man page and shell completions:
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR]
#
# PREFIX defaults to /usr/local (so $PREFIX/bin/imagectl); DESTDIR (empty by default) is put in
# front of every path, for packaging. Installs:
#   $PREFIX/bin/imagectl
#   $PREFIX/share/man/man1/imagectl.1                         (`man imagectl`)
#   $PREFIX/share/bash-completion/completions/imagectl        (bash-completion finds it there)
#   $PREFIX/share/zsh/site-functions/_imagectl                (in zsh's default fpath)
#   $PREFIX/share/fish/vendor_completions.d/imagectl.fish
# The man page is generated from the command definitions by swift-argument-parser's
# generate-manual plugin; the completions come from `imagectl --generate-completion-script`
# and complete image names (show, clone, run -M, ...) and running machine names (stop, shell,
# ...) by asking the installed imagectl. Needs the Swift toolchain (/opt/swift) and the build
# dependencies (scripts/install-deps.sh); run as root to install under /usr/local.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

prefix=/usr/local
destdir=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="$2"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see scripts/install.sh --help)" >&2; exit 2 ;;
  esac
done
command -v swift >/dev/null || { echo "error: swift not found (expected /opt/swift/usr/bin/swift)" >&2; exit 1; }

echo "== build (release)"
swift build -c release --product imagectl
binary="$(swift build -c release --show-bin-path)/imagectl"

echo "== man page (generate-manual plugin)"
swift package generate-manual --configuration release
page=".build/plugins/GenerateManual/outputs/imagectl/imagectl.1"
[ -s "$page" ] || { echo "error: the plugin wrote no $page" >&2; exit 1; }

root="$destdir$prefix"
echo "== install into $root"
install -D -m 0755 "$binary" "$root/bin/imagectl"
install -D -m 0644 "$page" "$root/share/man/man1/imagectl.1"
completions=$(mktemp -d)
trap 'rm -rf "$completions"' EXIT
"$binary" --generate-completion-script bash >"$completions/imagectl"
"$binary" --generate-completion-script zsh >"$completions/_imagectl"
"$binary" --generate-completion-script fish >"$completions/imagectl.fish"
install -D -m 0644 "$completions/imagectl" "$root/share/bash-completion/completions/imagectl"
install -D -m 0644 "$completions/_imagectl" "$root/share/zsh/site-functions/_imagectl"
install -D -m 0644 "$completions/imagectl.fish" "$root/share/fish/vendor_completions.d/imagectl.fish"
if [ -z "$destdir" ] && command -v mandb >/dev/null; then mandb -q 2>/dev/null || true; fi
echo "installed: $root/bin/imagectl, man page and bash/zsh/fish completions"
