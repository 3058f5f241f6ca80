#!/usr/bin/env bash
# Single-stream TCP throughput (iperf3, 5 s) per encapsulation in the host-mode lab, against a
# plain routed veth baseline measured in the same run. Root; release build.
#   netns-lab/bench/throughput.sh
# Paths (expressroute.yaml): VXLAN = onprem-w1 -> onprem-w2 pods (Site tunnelProtocol VXLAN),
# None = onprem-w1 -> azure-w1 pods over the private interconnect, WireGuard (boringtun, user
# space) = edge-w1 -> azure-gw1 pods over the internet.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p netns-lab
lab=target/release/netns-lab
name=bench
log=$(mktemp)
cleanup() { "$lab" down --name "$name" >/dev/null 2>&1 || true; rm -f "$log"; }
trap cleanup EXIT INT TERM
"$lab" up scenarios/expressroute.yaml --without-delay --name "$name" >"$log" 2>&1 &
for _ in $(seq 1 100); do grep -q "is up" "$log" && break; sleep 0.2; done
grep -q "is up" "$log" || { cat "$log"; exit 1; }

ns() { echo "nl-$name-$1"; }
pod_ip() { ip netns exec "$(ns "p-$1")" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1; }

# Baseline: two namespaces joined by a routed veth pair, inside the lab's prefix so `down`
# removes them.
ip netns add "$(ns bench-a)"; ip netns add "$(ns bench-b)"
ip -n "$(ns bench-a)" link add v0 type veth peer name v0 netns "$(ns bench-b)"
ip -n "$(ns bench-a)" addr add 10.255.0.1/30 dev v0; ip -n "$(ns bench-a)" link set v0 up
ip -n "$(ns bench-b)" addr add 10.255.0.2/30 dev v0; ip -n "$(ns bench-b)" link set v0 up

measure() { # client-ns server-ns server-ip
  ip netns exec "$2" iperf3 -s -1 -p 5301 >/dev/null 2>&1 &
  sleep 0.5
  ip netns exec "$1" iperf3 -c "$3" -p 5301 -t 5 -J | python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))'
  wait
}
base=$(measure "$(ns bench-a)" "$(ns bench-b)" 10.255.0.2)
vx=$(measure "$(ns p-onprem-w1)" "$(ns p-onprem-w2)" "$(pod_ip onprem-w2)")
none=$(measure "$(ns p-onprem-w1)" "$(ns p-azure-w1)" "$(pod_ip azure-w1)")
wg=$(measure "$(ns p-edge-w1)" "$(ns p-azure-gw1)" "$(pod_ip azure-gw1)")
ratio() { python3 -c "print('%.2f' % ($1/$base))"; }
echo "date: $(date -u +%FT%TZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
printf '%-32s %10s %8s\n' path Mbit/s ratio
printf '%-32s %10s %8s\n' "plain routed veth (baseline)" "$base" 1.00
printf '%-32s %10s %8s\n' "VXLAN (intra-site)" "$vx" "$(ratio "$vx")"
printf '%-32s %10s %8s\n' "None (private interconnect)" "$none" "$(ratio "$none")"
printf '%-32s %10s %8s\n' "WireGuard (boringtun)" "$wg" "$(ratio "$wg")"
