#!/usr/bin/env bash
# Single-stream TCP throughput (iperf3, 5 s) through the eBPF dataplane (TC program on the
# unbounded0 anchor + shared flow-based vxlan0) vs the netlink dataplane (per-peer VXLAN
# device) vs a plain routed veth, measured in the same run and printed as ratios. Root.
#   netns-lab/bench/ebpf-throughput.sh [runs]      (default 3 runs)
# Everything (namespaces, private bpffs with the pins) is created and removed by the bench
# binary itself (benches/ebpf.rs), also when it fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
[ "$(id -u)" = 0 ] || { echo "ebpf-throughput: needs root (namespaces, BPF)"; exit 1; }
command -v iperf3 >/dev/null || { echo "ebpf-throughput: iperf3 missing (scripts/setup.sh installs it)"; exit 1; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
for i in $(seq 1 "$runs"); do
  echo "run $i/$runs"
  cargo bench -q -p unbounded-net --bench ebpf -- throughput 2>/dev/null
done
