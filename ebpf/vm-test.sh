#!/usr/bin/env bash
# Runs tests/netns_ebpf.rs inside a qemu (TCG) VM booted with Debian's cloud kernel, which has
# the GENEVE, IPIP and dummy modules this machine's kernel lacks (ENVIRONMENT.md). Root.
#   ebpf/vm-test.sh [test-name-filter]
# Needs what scripts/setup.sh installs: the unpacked cloud kernel under
# /var/cache/unbounded-net/vm-kernel/, qemu-system-x86, busybox-static, cpio, dash.
# The guest gets busybox for the basics but dash as /bin/sh: busybox's ash would run its own
# `ip` applet (no `external`, no `netns`) instead of iproute2's.
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
[ "$(id -u)" = 0 ] || { echo "vm-test: needs root"; exit 1; }
rel=$(ls /var/cache/unbounded-net/vm-kernel/ 2>/dev/null | sort | tail -1)
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
cat > "$root/init" <<INIT
#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp
for m in \$(cat /mods/order); do insmod \$m || echo "vm-test: insmod \$m failed"; done
/usr/sbin/ip link set lo up
echo "@@vm-test@@ kernel \$(cat /proc/sys/kernel/osrelease)"
/usr/bin/netns_ebpf --test-threads=1 --nocapture $filter
echo "@@vm-test@@ EXIT \$?"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd.gz"
# /dev/kvm exists here but KVM hangs (ENVIRONMENT.md): TCG.
timeout 1200 qemu-system-x86_64 -accel tcg -cpu max -m 2048 -nographic -no-reboot \
  -kernel "$kdir/boot/vmlinuz-$rel" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" | tee "$work/console.log" | grep -v '^\s*$' || true
rc=$(sed -n 's/.*@@vm-test@@ EXIT \([0-9]*\).*/\1/p' "$work/console.log" | tail -1)
[ "$rc" = 0 ] || { echo "vm-test: tests failed in the VM (exit ${rc:-none})"; exit 1; }
echo "vm-test: all selected tests passed on $rel"
