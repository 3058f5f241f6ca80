#!/bin/sh
# /init of the netns-lab guest (rendered by netns-lab/src/vm/mod.rs; @…@ are filled in).
# Output goes to the serial console, which the host streams; the last lines carry the
# result JSON and the exit status between markers the host looks for.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /sys/fs/bpf /tmp /run /var
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ln -s /run /var/run
echo /sbin/modprobe > /proc/sys/kernel/modprobe
hostname netns-lab-vm
boot_ms=$(cat /proc/uptime)
while read -r m; do
  insmod "$m" 2>/dev/null || echo "netns-lab-vm: insmod $m failed"
done < /lab/modules.load
# busybox sh would run its own `ip` applet: call the real one by path.
/usr/sbin/ip link set lo up
echo "@MARKER@ BOOTED $boot_ms $(cat /proc/uptime)"
/usr/bin/netns-lab scenario @ARGS@ --json /tmp/result.json
rc=$?
if [ -f /tmp/result.json ]; then
  echo "@MARKER@ JSON $(tr -d '\n' < /tmp/result.json)"
fi
echo "@MARKER@ EXIT $rc"
poweroff -f
