#!/bin/bash
# Time to poweroff of `imagectl vm` against the hand-written qemu command for the same kernel,
# initrd and image (MACHINE-NOTES.md "VMs"), measured A B A B (alternating, so load changes hit
# both alike), medians and the ratio; and imagectl's own overhead before qemu starts (the time
# of `--print-command`, which does everything but start qemu and make the temporary files).
#   scripts/bench-vm.sh [IMAGECTL] [ROUNDS]
# Needs root (for the fixture), qemu-system-x86_64, linux-image-amd64 and the vm-debian.raw
# fixture. Both sides boot a throw-away qcow2 overlay (imagectl -x; qemu-img by hand for qemu),
# so the fixture is not changed. TCG here: a boot takes ~25 s, so the default is 2 rounds.
set -euo pipefail
IMAGECTL=${1:-.build/release/imagectl}
ROUNDS=${2:-2}
FIXTURES=${IMAGECTL_FIXTURES:-/var/cache/imagectl-fixtures}
IMAGE=$FIXTURES/vm-debian.raw
KERNEL=$(ls -1 /boot/vmlinuz-* | sort -V | tail -n 1)
INITRD=/boot/initrd.img-${KERNEL#/boot/vmlinuz-}
SCRATCH=$(mktemp -d /var/tmp/bench-vm.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
PARTUUID=$(sfdisk --json "$IMAGE" | python3 -c 'import json,sys
print(next(p["uuid"].lower() for p in json.load(sys.stdin)["partitiontable"]["partitions"] if p["type"].upper()=="4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"))')

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.0f\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

VMARGS=(vm -x -i "$IMAGE" --linux="$KERNEL" --initrd="$INITRD" --ram=1G --cpus=2 --kvm=no --tpm=no
        --console=read-only systemd.unit=poweroff.target)
imagectl_boot() { "$IMAGECTL" vm -q "${VMARGS[@]:1}"; }
# The very argv imagectl runs (from --print-command), by hand with the overlay it names: isolates
# imagectl's own cost from the device choices (q35, virtio-rng) that differ from MACHINE-NOTES.
same_argv_boot() {
    local cmd overlay
    cmd=$(IMAGECTL_VM_TMPDIR="$SCRATCH" "$IMAGECTL" vm --print-command "${VMARGS[@]:1}")
    overlay=$(printf '%s\n' "$cmd" | grep -o "$SCRATCH/imagectl-vm-[^/]*/overlay.qcow2")
    mkdir -p "$(dirname "$overlay")"
    qemu-img create -q -f qcow2 -F raw -b "$IMAGE" "$overlay"
    eval "$cmd" </dev/null
    rm -rf "$(dirname "$overlay")"
}
qemu_boot() {
    rm -f "$SCRATCH/overlay.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$IMAGE" "$SCRATCH/overlay.qcow2"
    qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot \
        -kernel "$KERNEL" -initrd "$INITRD" \
        -drive file="$SCRATCH/overlay.qcow2",format=qcow2,if=virtio \
        -append "console=ttyS0 root=PARTUUID=$PARTUUID rw systemd.unit=poweroff.target panic=-1" </dev/null
    rm -f "$SCRATCH/overlay.qcow2"
}

: > "$SCRATCH/a"; : > "$SCRATCH/b"; : > "$SCRATCH/c"
for i in $(seq "$ROUNDS"); do
    t=$(now); imagectl_boot >"$SCRATCH/a.log" 2>&1 || { echo "imagectl vm failed: $?" >&2; tail -5 "$SCRATCH/a.log" >&2; }
    echo $(( $(now) - t )) >> "$SCRATCH/a"
    grep -q "reboot: Power down" "$SCRATCH/a.log" || echo "imagectl vm: round $i did not reach poweroff" >&2
    t=$(now); qemu_boot >"$SCRATCH/b.log" 2>&1 || echo "qemu failed: $?" >&2
    echo $(( $(now) - t )) >> "$SCRATCH/b"
    grep -q "reboot: Power down" "$SCRATCH/b.log" || echo "qemu: round $i did not reach poweroff" >&2
    t=$(now); same_argv_boot >"$SCRATCH/c.log" 2>&1 || echo "same-argv qemu failed: $?" >&2
    echo $(( $(now) - t )) >> "$SCRATCH/c"
    grep -q "reboot: Power down" "$SCRATCH/c.log" || echo "same-argv qemu: round $i did not reach poweroff" >&2
done
a=$(median < "$SCRATCH/a"); b=$(median < "$SCRATCH/b")
c=$(median < "$SCRATCH/c")
echo "each round in ms: imagectl vm $(awk '{printf "%d ", $1/1000000}' "$SCRATCH/a")| qemu (MACHINE-NOTES) $(awk '{printf "%d ", $1/1000000}' "$SCRATCH/b")| qemu (imagectl's argv) $(awk '{printf "%d ", $1/1000000}' "$SCRATCH/c")"
printf 'boot to poweroff (%d rounds, TCG): imagectl vm %.2f s, qemu by hand (MACHINE-NOTES command) %.2f s, ratio %.3f\n' \
    "$ROUNDS" "$(echo "$a / 1000000000" | bc -l)" "$(echo "$b / 1000000000" | bc -l)" "$(echo "$a / $b" | bc -l)"
printf 'same argv by hand: %.2f s; imagectl vm / same argv %.3f\n' "$(echo "$c / 1000000000" | bc -l)" "$(echo "$a / $c" | bc -l)"

: > "$SCRATCH/p"
for _ in $(seq 10); do
    t=$(now); "$IMAGECTL" vm --print-command "${VMARGS[@]:1}" >/dev/null
    echo $(( $(now) - t )) >> "$SCRATCH/p"
done
printf 'imagectl overhead before qemu (--print-command: dissect, checks, argv; median of 10): %.1f ms\n' \
    "$(echo "$(median < "$SCRATCH/p") / 1000000" | bc -l)"
: > "$SCRATCH/o"
for _ in $(seq 10); do
    t=$(now); qemu-img create -q -f qcow2 -F raw -b "$IMAGE" "$SCRATCH/o.qcow2"; echo $(( $(now) - t )) >> "$SCRATCH/o"; rm -f "$SCRATCH/o.qcow2"
done
printf 'plus the -x overlay (qemu-img create; median of 10): %.1f ms\n' "$(echo "$(median < "$SCRATCH/o") / 1000000" | bc -l)"
