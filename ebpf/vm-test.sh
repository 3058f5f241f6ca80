#!/usr/bin/env bash
# Runs tests/netns_ebpf.rs inside a qemu (TCG) VM booted with Debian's cloud kernel, which has
# the GENEVE, IPIP and dummy modules this machine's kernel lacks (ENVIRONMENT.md). Root.
#   ebpf/vm-test.sh [test-name-filter]
# The VM exists to exercise what this kernel cannot, so it fails (naming what) when a module
# did not load in the guest, when a test reported itself skipped there, or when no test ran.
# VM_TEST_BREAK_MODULE=geneve (a module's file name without .ko) puts a corrupt copy of that
# module into the guest: the way to see that a module which does not load fails the run.
# Needs what scripts/setup.sh installs: the unpacked cloud kernel under
# /var/cache/unbounded-net/vm-kernel/, qemu-system-x86, busybox-static, cpio, dash.
# The guest gets busybox for the basics but dash as /bin/sh: busybox's ash would run its own
# `ip` applet (no `external`, no `netns`) instead of iproute2's.
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
[ "$(id -u)" = 0 ] || { echo "vm-test: needs root"; exit 1; }
rel=$(find /var/cache/unbounded-net/vm-kernel/ -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort | tail -1)
[ -n "$rel" ] || { echo "vm-test: no cloud kernel unpacked: run scripts/setup.sh"; exit 1; }
for t in qemu-system-x86_64 busybox cpio dash; do
  command -v "$t" >/dev/null || { echo "vm-test: $t missing: run scripts/setup.sh"; exit 1; }
done
kdir=/var/cache/unbounded-net/vm-kernel/$rel
mods=$kdir/lib/modules/$rel

bin=$(cargo test -q --no-run --test netns_ebpf --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="netns_ebpf" and m.get("executable"):
        print(m["executable"])')
[ -x "$bin" ] || { echo "vm-test: building tests/netns_ebpf.rs failed"; exit 1; }

work=$(mktemp -d /tmp/unet-ebpf-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root
mkdir -p "$root"/{bin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mods}
cp "$(command -v busybox)" "$root/bin/busybox"
for a in mount umount mkdir cat echo poweroff insmod ln; do ln -s busybox "$root/bin/$a"; done
copy() { # binary, destination directory (libraries from ldd come along)
  cp "$1" "$root$2/"
  for l in $(ldd "$1" | grep -o '/[^ ]*\.so[^ ]*'); do
    mkdir -p "$root$(dirname "$l")"; cp -L "$l" "$root$l"
  done
}
copy /usr/sbin/ip /usr/sbin; copy /usr/sbin/tc /usr/sbin; copy "$(command -v ping)" /usr/bin
copy "$(command -v dash)" /bin; ln -s dash "$root/bin/sh"
copy "$bin" /usr/bin; mv "$root/usr/bin/$(basename "$bin")" "$root/usr/bin/netns_ebpf"
for m in drivers/net/veth net/ipv4/udp_tunnel net/ipv6/ip6_udp_tunnel drivers/net/vxlan/vxlan \
         drivers/net/geneve net/ipv4/tunnel4 net/ipv4/ip_tunnel net/ipv4/ipip drivers/net/dummy \
         net/sched/sch_ingress net/sched/cls_bpf drivers/net/tun; do
  cp "$mods/kernel/$m.ko" "$root/mods/"; echo "/mods/$(basename "$m").ko" >> "$root/mods/order"
done
if [ -n "${VM_TEST_BREAK_MODULE:-}" ]; then
  [ -f "$root/mods/$VM_TEST_BREAK_MODULE.ko" ] ||
    { echo "vm-test: VM_TEST_BREAK_MODULE=$VM_TEST_BREAK_MODULE is not one of the guest's modules"; exit 1; }
  echo "vm-test: VM_TEST_BREAK_MODULE: corrupting $VM_TEST_BREAK_MODULE.ko in the guest"
  echo "not an ELF module" > "$root/mods/$VM_TEST_BREAK_MODULE.ko"
fi
cat > "$root/init" <<INIT
#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
for m in \$(cat /mods/order); do insmod \$m || echo "@@vm-test@@ NOT-LOADED \$m"; done
/usr/sbin/ip link set lo up
echo "@@vm-test@@ kernel \$(cat /proc/sys/kernel/osrelease)"
export UNBOUNDED_SKIP_LOG=/tmp/skipped; : > /tmp/skipped
/usr/bin/netns_ebpf --test-threads=1 --nocapture $filter
echo "@@vm-test@@ EXIT \$?"
while read -r line; do echo "@@vm-test@@ \$line"; done < /tmp/skipped
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd.gz"
# /dev/kvm exists here but KVM hangs (ENVIRONMENT.md): TCG.
timeout 1200 qemu-system-x86_64 -accel tcg -cpu max -m 2048 -nographic -no-reboot \
  -kernel "$kdir/boot/vmlinuz-$rel" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" | tee "$work/console.log" | grep -v '^\s*$' || true
tr -d '\r' < "$work/console.log" > "$work/console.txt"
rc=$(sed -n 's/.*@@vm-test@@ EXIT \([0-9]*\).*/\1/p' "$work/console.txt" | tail -1)
failed=0
fail() { echo "vm-test: FAILED: $*"; failed=1; }
[ "$rc" = 0 ] || fail "the tests failed in the VM (exit ${rc:-none: the guest did not finish})"
sed -n 's|.*@@vm-test@@ NOT-LOADED /mods/\(.*\)\.ko.*|\1|p' "$work/console.txt" > "$work/not-loaded"
while read -r m; do fail "module $m did not load in the VM, so what needs it was not exercised"; done < "$work/not-loaded"
sed -n 's/.*@@vm-test@@ SKIPPED //p' "$work/console.txt" > "$work/skipped"
while read -r why; do fail "skipped in the VM: $why"; done < "$work/skipped"
passed=$(sed -n 's/.*test result: [a-zA-Z]*\. \([0-9]*\) passed.*/\1/p' "$work/console.txt" | tail -1)
[ "${passed:-0}" -gt 0 ] || fail "no test passed in the VM (filter '${filter}' matched none?)"
[ "$failed" = 0 ] || exit 1
echo "vm-test: $passed tests passed on $rel; every module loaded, nothing skipped"
