#!/usr/bin/env bash
# kill -9 at N random points of each mutating verb, then `clean` and a rerun (issue 16):
#
#   scripts/kill9.sh [N] [VERB...]        (default N=10, every verb; as root)
#
# For each verb and each of N rounds: set up its precondition, start the verb, SIGKILL it after a
# random delay within its measured run time (120%), then check what a user would see:
#   partial    the verb's result is visible but not whole (an image listed that differs from the
#              source, a rename that shows both or neither name, an image listed without its side
#              file, an export output that is not complete, a limit that is neither old nor new)
#   leftovers  `.#` names still in the pool or beside an export output after `imagectl clean`;
#              for run-x and run-i also a process, mount, loop device, staging directory or
#              machine record of the killed run that `clean` (and a few seconds) did not remove
#   rerun      running the verb again to completion failed or gave a wrong result
# Prints one line per verb, `VERB KILLS PARTIAL LEFTOVERS RERUNS_FAILED`, and exits 1 if any of
# the last three is not zero. IMAGECTL names the binary (default .build/debug/imagectl).
# set-limit and run-x (-x on a btrfs pool image: a snapshot beside it) run only where a
# loop-mounted btrfs (with quota, for set-limit) can be made; run-i runs a copy of the fixture
# bare-ext4.raw (fixtures/build.sh) and is skipped without it. The pulls use
# fixtures/test-http-server.py on 127.0.0.1 of a network namespace of the script's own
# (unshare --net), so no traffic touches the machine's network.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${IMAGECTL_KILL9_NETNS:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "error: kill9.sh needs root (image flags, loop devices)" >&2; exit 2; }
  exec unshare --net -- env IMAGECTL_KILL9_NETNS=1 "$0" "$@"
fi
ip link set lo up || { echo "error: cannot bring up lo in the script's network namespace" >&2; exit 2; }
N=${1:-10}
shift || true
IMAGECTL=${IMAGECTL:-$PWD/.build/debug/imagectl}
[ -x "$IMAGECTL" ] || { echo "error: $IMAGECTL not built (swift build)" >&2; exit 2; }
case "$N" in ''|*[!0-9]*) echo "error: N must be a number, not '$N'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "error: kill9.sh needs root (image flags, loop devices)" >&2; exit 2; }

FIXTURES=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
WORK=$(mktemp -d /var/tmp/imagectl-kill9.XXXXXX)
POOL=$WORK/pool
OUT=$WORK/out
SERVER_PID=
BTRFS_MNT=
cleanup() {
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
  [ -n "$BTRFS_MNT" ] && umount "$BTRFS_MNT" 2>/dev/null
  chattr -R -i "$WORK" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$POOL" "$OUT" "$WORK/in"
export IMAGECTL_ROOT=$POOL
# Locks and a machine registry of its own, so that a run never sees another test's.
export IMAGECTL_LOCK_DIR=$WORK/locks
export IMAGECTL_RUNTIME_DIR=$WORK/runtime
ic() { "$IMAGECTL" "$@"; }

# --- inputs ------------------------------------------------------------------------------------
# A tree of 2,000 small files (so that copies and deletions take a while) and a 48 MiB disk.
python3 - "$WORK/in/tree" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(16)
for d in range(40):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(50):
        with open(f"{root}/d{d}/f{f}", "wb") as h:
            h.write(bytes(r.getrandbits(8) for _ in range(512)) * 8)
EOF
python3 -c "
import sys, random
r = random.Random(9)
out = sys.stdout.buffer
for i in range(48):
    out.write(bytes(r.getrandbits(8) for _ in range(1 << 16)) * 16 if i % 3 else bytes(1 << 20))
" > "$WORK/in/disk.raw"
xz -T2 -1 -c "$WORK/in/disk.raw" > "$WORK/in/disk.raw.xz"
tar -C "$WORK/in/tree" -cf - . | xz -T2 -1 -c > "$WORK/in/tree.tar.xz"
(cd "$WORK/in" && sha256sum disk.raw.xz tree.tar.xz > SHA256SUMS)

# What a whole tree looks like: names, types, modes, sizes, contents.
tree_sum() {
  [ -d "$1" ] || { echo missing; return; }
  (cd "$1" && { find . -mindepth 1 -printf '%p %y %m %s\n' | sort; find . -type f -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -d' ' -f1)
}
TREE_SUM=$(tree_sum "$WORK/in/tree")

python3 fixtures/test-http-server.py --dir "$WORK/in" --port 0 > "$WORK/server.out" 2>/dev/null &
SERVER_PID=$!
disown "$SERVER_PID"  # killed by the EXIT trap; no job notice on stderr
for _ in $(seq 100); do grep -q '^PORT ' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
PORT=$(sed -n 's/^PORT //p' "$WORK/server.out")
[ -n "$PORT" ] || { echo "error: test HTTP server did not start" >&2; exit 2; }
URL=http://127.0.0.1:$PORT

# (grep reads to the end: with -q it would close the pipe under python's feet.)
listed() { ic list --all --json 2>/dev/null | python3 -c "import json,sys; print('\n'.join(i['name'] for i in json.load(sys.stdin)))" | grep -xF "$1" >/dev/null; }
raw_ok() { cmp -s "$WORK/in/disk.raw" "$1"; }
tree_ok() { [ "$(tree_sum "$1")" = "$TREE_SUM" ]; }
# An image NAME of KIND (raw|tree) is absent, or listed and whole.
absent_or_whole() {
  local name=$1 kind=$2
  listed "$name" || { [ ! -e "$POOL/$name" ] && [ ! -e "$POOL/$name.raw" ]; return; }
  if [ "$kind" = raw ]; then raw_ok "$POOL/$name.raw"; else tree_ok "$POOL/$name"; fi
}
present_and_whole() {
  local name=$1 kind=$2
  listed "$name" || return 1
  if [ "$kind" = raw ]; then raw_ok "$POOL/$name.raw"; else tree_ok "$POOL/$name"; fi
}
drop() { for n in "$@"; do listed "$n" && ic remove "$n" >/dev/null 2>&1; done; ic clean >/dev/null 2>&1; true; }
leftovers() { find "$POOL" "$OUT" -maxdepth 1 -name '.#*' ! -name '*.lck' | wc -l; }

# --- verbs: setup, command, check after the kill, check after the rerun ---------------------------
# Each verb is four functions: setup_V, cmd_V (sets ARGV), killed_ok_V, rerun_ok_V.
setup_base() { listed base || { ic import-fs "$WORK/in/tree" base >/dev/null; }; listed disk || ic import-raw "$WORK/in/disk.raw" disk >/dev/null; }

setup_import_raw() { drop imp; };  cmd_import_raw() { ARGV=(import-raw "$WORK/in/disk.raw.xz" imp); }
killed_ok_import_raw() { absent_or_whole imp raw; }; rerun_ok_import_raw() { present_and_whole imp raw; }
setup_import_tar() { drop impt; }; cmd_import_tar() { ARGV=(import-tar "$WORK/in/tree.tar.xz" impt); }
killed_ok_import_tar() { absent_or_whole impt tree; }; rerun_ok_import_tar() { present_and_whole impt tree; }
setup_import_fs() { drop impf; };  cmd_import_fs() { ARGV=(import-fs "$WORK/in/tree" impf); }
killed_ok_import_fs() { absent_or_whole impf tree; }; rerun_ok_import_fs() { present_and_whole impf tree; }
setup_pull_raw() { drop pulled; }; cmd_pull_raw() { ARGV=(pull-raw --verify=checksum "$URL/disk.raw.xz" pulled); }
killed_ok_pull_raw() { absent_or_whole pulled raw; }; rerun_ok_pull_raw() { present_and_whole pulled raw; }
setup_pull_tar() { drop pulledt; }; cmd_pull_tar() { ARGV=(pull-tar --verify=checksum "$URL/tree.tar.xz" pulledt); }
killed_ok_pull_tar() { absent_or_whole pulledt tree; }; rerun_ok_pull_tar() { present_and_whole pulledt tree; }
setup_clone() { setup_base; drop copy; }; cmd_clone() { ARGV=(clone base copy); }
killed_ok_clone() { absent_or_whole copy tree; }; rerun_ok_clone() { present_and_whole copy tree; }

# rename: "ren" with a side file becomes "ren2"; exactly one of them, whole, with its side file.
setup_rename() {
  setup_base; drop ren2
  listed ren || { ic clone base ren >/dev/null && echo '[Exec]' > "$POOL/ren.nspawn"; }
}
cmd_rename() { ARGV=(rename ren ren2); }
one_of_renamed() {
  local a=0 b=0
  listed ren && a=1; listed ren2 && b=1
  [ $((a + b)) = 1 ] || return 1
  local n=ren; [ $b = 1 ] && n=ren2
  tree_ok "$POOL/$n" && [ -f "$POOL/$n.nspawn" ]
}
killed_ok_rename() { one_of_renamed; }
rerun_ok_rename() { listed ren && { ic rename ren ren2 >/dev/null 2>&1 || return 1; }; listed ren2 && ! listed ren && tree_ok "$POOL/ren2" && [ -f "$POOL/ren2.nspawn" ]; }

# remove: "victim" with a side file: whole with its side file, or gone with it.
setup_remove() { setup_base; listed victim || { ic clone base victim >/dev/null && echo '[Exec]' > "$POOL/victim.nspawn"; }; }
cmd_remove() { ARGV=(remove victim); }
killed_ok_remove() { if listed victim; then tree_ok "$POOL/victim" && [ -f "$POOL/victim.nspawn" ]; else ic clean >/dev/null 2>&1; [ ! -e "$POOL/victim.nspawn" ]; fi; }
rerun_ok_remove() { if listed victim; then ic remove victim >/dev/null 2>&1 || return 1; fi; ! listed victim && [ ! -e "$POOL/victim.nspawn" ]; }

# exports: the output is absent or complete.
setup_export_tar() { setup_base; rm -f "$OUT/base.tar"; }; cmd_export_tar() { ARGV=(export-tar base "$OUT/base.tar"); }
export_tar_ok() { local x=$WORK/x; rm -rf "$x"; mkdir "$x" && tar -C "$x" -xf "$OUT/base.tar" 2>/dev/null && tree_ok "$x"; }
killed_ok_export_tar() { [ ! -e "$OUT/base.tar" ] || export_tar_ok; }; rerun_ok_export_tar() { [ -e "$OUT/base.tar" ] && export_tar_ok; }
setup_export_raw() { setup_base; rm -f "$OUT/disk.raw.xz"; }; cmd_export_raw() { ARGV=(export-raw disk "$OUT/disk.raw.xz"); }
export_raw_ok() { xz -dc "$OUT/disk.raw.xz" 2>/dev/null | cmp -s - "$WORK/in/disk.raw"; }
killed_ok_export_raw() { [ ! -e "$OUT/disk.raw.xz" ] || export_raw_ok; }; rerun_ok_export_raw() { [ -e "$OUT/disk.raw.xz" ] && export_raw_ok; }

# set-limit on a btrfs pool with quota: the limit is the old or the new one.
limit_of() { IMAGECTL_ROOT=$BTRFS_MNT/pool ic show --json lim 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin).get('limit', 'none'))"; }
LIMIT_OLD=none
setup_set_limit() {
  if [ -z "$(IMAGECTL_ROOT=$BTRFS_MNT/pool ic list --json 2>/dev/null | grep -o '"lim"')" ]; then
    IMAGECTL_ROOT=$BTRFS_MNT/pool ic import-tar "$WORK/in/tree.tar.xz" lim >/dev/null
  fi
  IMAGECTL_ROOT=$BTRFS_MNT/pool ic set-limit lim none >/dev/null 2>&1
  LIMIT_OLD=$(limit_of)
}
cmd_set_limit() { ARGV=(set-limit lim 1G); }
killed_ok_set_limit() { local l; l=$(limit_of); [ "$l" = "$LIMIT_OLD" ] || [ "$l" = 1073741824 ]; }
rerun_ok_set_limit() { [ "$(limit_of)" = 1073741824 ]; }

# run-x: -x on the btrfs pool image "eph" (busybox): the container writes to its snapshot
# (`.#eph.<hex>` beside the image). Killed: the image unchanged; after clean no snapshot, no
# process of the run, no machine record.
EPH_SUM=
# The container's payload: writes a mark of this script's run, then a while longer.
MARK=written-$$
PAYLOAD=(sh -c "echo $MARK > /written; i=0; while [ \$i -lt 300 ]; do echo \$i > /count; i=\$((i+1)); done")
machines_listed() { ic machines --json 2>/dev/null | python3 -c "import json,sys; print(len(json.load(sys.stdin)))" 2>/dev/null || echo 0; }
setup_run_x() {
  if ! IMAGECTL_ROOT=$BTRFS_MNT/pool listed eph; then
    IMAGECTL_ROOT=$BTRFS_MNT/pool ic import-tar "$FIXTURES/busybox.tar" eph >/dev/null
    EPH_SUM=$(tree_sum "$BTRFS_MNT/pool/eph")
  fi
}
cmd_run_x() { ARGV=(run -q -x -M eph -- "${PAYLOAD[@]}"); }
killed_ok_run_x() { [ "$(tree_sum "$BTRFS_MNT/pool/eph")" = "$EPH_SUM" ]; }
rerun_ok_run_x() { [ "$(tree_sum "$BTRFS_MNT/pool/eph")" = "$EPH_SUM" ] && [ "$(machines_listed)" = 0 ]; }

# run-i: a raw image run writable (its /written and /count change): killed, the image still
# dissects; after clean no loop device on it, no mount or staging directory of the killed run,
# no process of it, no machine record.
setup_run_i() { [ -e "$WORK/in/run.raw" ] || cp --sparse=always "$FIXTURES/bare-ext4.raw" "$WORK/in/run.raw"; }
cmd_run_i() { ARGV=(run -q -i "$WORK/in/run.raw" -- "${PAYLOAD[@]}"); }
killed_ok_run_i() { ic dissect "$WORK/in/run.raw" >/dev/null 2>&1; }
rerun_ok_run_i() { ic run -q --read-only -i "$WORK/in/run.raw" cat /written 2>/dev/null | grep -qx "$MARK" && [ "$(machines_listed)" = 0 ]; }

# What a killed run may leave that clean must take: the killed imagectl's staging directories,
# loop devices on the image, processes of the container, machine records. Polls up to 10 s
# (the kernel detaches an autoclear loop device once its last user is gone).
run_leftovers() {
  local pid=$1 what
  for _ in $(seq 100); do
    what=""
    ls /run/imagectl/runner 2>/dev/null | grep -q "^image\.$pid\." && what+="staging-of-$pid "
    [ -n "$(losetup -j "$WORK/in/run.raw" 2>/dev/null)" ] && what+="loop-device "
    grep -q " $BTRFS_MNT/pool/\.#eph" /proc/self/mountinfo 2>/dev/null && what+="snapshot-mounted "
    pgrep -f -- "echo $MARK > /written" >/dev/null && what+="container-process "
    [ "$(machines_listed)" = 0 ] || what+="machine-record "
    [ -z "$what" ] && return 0
    sleep 0.1
  done
  echo "$what"
  return 1
}

VERBS=(import-raw import-tar import-fs pull-raw pull-tar clone rename remove export-tar export-raw)
if command -v mkfs.btrfs >/dev/null && truncate -s 300M "$WORK/btrfs.img" && mkfs.btrfs -q -f "$WORK/btrfs.img" >/dev/null 2>&1 \
   && mkdir -p "$WORK/btrfs" && mount -o loop "$WORK/btrfs.img" "$WORK/btrfs" 2>/dev/null; then
  BTRFS_MNT=$WORK/btrfs
  mkdir -p "$BTRFS_MNT/pool"
  if btrfs quota enable "$BTRFS_MNT" 2>/dev/null; then VERBS+=(set-limit); else echo "note: no btrfs quota: set-limit skipped" >&2; fi
  if [ -e "$FIXTURES/busybox.tar" ]; then VERBS+=(run-x); else echo "note: no $FIXTURES/busybox.tar: run-x skipped" >&2; fi
else
  echo "note: no loop-mounted btrfs: set-limit and run-x skipped" >&2
fi
if [ -e "$FIXTURES/bare-ext4.raw" ]; then VERBS+=(run-i); else echo "note: no $FIXTURES/bare-ext4.raw: run-i skipped" >&2; fi
[ $# -gt 0 ] && VERBS=("$@")

now() { date +%s.%N; }
status=0
printf '%-11s %5s %7s %9s %13s\n' VERB KILLS PARTIAL LEFTOVERS RERUNS_FAILED
for verb in "${VERBS[@]}"; do
  v=${verb//-/_}
  root=$POOL; case $verb in set-limit|run-x) root=$BTRFS_MNT/pool ;; esac
  # One full run measures how long the verb takes; kills land within 120% of that.
  "setup_$v"
  start=$(now)
  "cmd_$v"; argv=("${ARGV[@]}")
  IMAGECTL_ROOT=$root ic "${argv[@]}" >/dev/null 2>"$WORK/err" || { echo "error: $verb does not run: $(cat "$WORK/err")" >&2; status=1; continue; }
  duration=$(echo "$(now) - $start" | bc)
  kills=0 partial=0 left=0 failed=0
  for round in $(seq "$N"); do
    "setup_$v"
    delay=$(python3 -c "import random; print(random.uniform(0.0, $duration * 1.2))")
    # The binary itself in the background, not the `ic` function: $! must be imagectl's pid,
    # not that of a subshell whose death would leave imagectl running.
    IMAGECTL_ROOT=$root "$IMAGECTL" "${argv[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    wait "$pid" 2>/dev/null
    "killed_ok_$v" || { partial=$((partial + 1)); echo "note: $verb round $round: partial after kill at ${delay}s" >&2; }
    IMAGECTL_ROOT=$root ic clean >/dev/null 2>&1
    n=$(leftovers); [ "$root" != "$POOL" ] && n=$(find "$root" -maxdepth 1 -name '.#*' ! -name '*.lck' | wc -l)
    [ "$n" -gt 0 ] && { left=$((left + 1)); echo "note: $verb round $round: leftovers after clean: $(ls -a "$root" "$OUT" | grep '^\.#' | tr '\n' ' ')" >&2; }
    if [ "$n" -eq 0 ] && [[ $verb == run-* ]] && ! what=$(run_leftovers "$pid"); then
      left=$((left + 1)); echo "note: $verb round $round: leftovers after clean: $what" >&2
    fi
    # The rerun, from the state the kill left (the precondition restored where the kill already
    # did the work, as a user would: remove what exists, delete the output).
    case $verb in
      rename|remove|set-limit|run-*) ;;
      *) "setup_$v" ;;
    esac
    if [ "$verb" = rename ] || [ "$verb" = remove ]; then
      "rerun_ok_$v" || { failed=$((failed + 1)); echo "note: $verb round $round: rerun failed" >&2; }
    else
      if IMAGECTL_ROOT=$root ic "${argv[@]}" >/dev/null 2>"$WORK/err" && "rerun_ok_$v"; then :; else
        failed=$((failed + 1)); echo "note: $verb round $round: rerun failed: $(head -c 300 "$WORK/err")" >&2
      fi
    fi
  done
  printf '%-11s %5d %7d %9d %13d\n' "$verb" "$kills" "$partial" "$left" "$failed"
  [ $((partial + left + failed)) -eq 0 ] || status=1
done
exit $status
