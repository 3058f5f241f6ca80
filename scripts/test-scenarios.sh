#!/usr/bin/env bash
# Scenario tests, as CI runs them (called by scripts/test.sh when executable).
#   scripts/test-scenarios.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
status=0
# CI keeps its cargo target directory outside the clone (.ci/run sets CARGO_TARGET_DIR).
bin_dir="${CARGO_TARGET_DIR:-target}/release"

# ---- BEGIN simulator part (owner: sim/) --------------------------------------------------
# Every scenario once with its own timeline, then a sweep of random-fault seeds over every
# scenario (40 seeds each, 240 runs in all). A random-fault seed passes only if the invariants
# hold AND the scenario's expectations do: judged relative to a random fault that overlapped
# them, or reported "not judged" with the fault (see sim/src/disturb.rs), and the steady-state
# ones again after the last heal. Each run prints one PASS/FAIL line; a failed run also prints
# its expectation table, violation and replay command.
SIM_SEEDS=${SIM_SEEDS:-1..41}
cargo build --release -q -p sim
sim_bin="$bin_dir/sim"
for f in scenarios/*.yaml; do
  "$sim_bin" scenario "$f" --seed 1 || status=1
done
for f in scenarios/*.yaml; do
  "$sim_bin" scenario "$f" --seeds "$SIM_SEEDS" --faults random || status=1
done
# ---- END simulator part -------------------------------------------------------------------

# ---- BEGIN netns lab part (owner: netns-lab/) ---------------------------------------------
# Every host-mode scenario in the real-kernel lab (root), with the production controller and
# node agent over the embedded API store; expressroute.yaml also with --control-plane kube (a
# real kube-apiserver + etcd from controlplane/build.sh, unbounded-net-controller and one
# unbounded-net-node per node namespace). A `kernel: vm` scenario must be refused in host mode
# with a message naming `--kernel vm`, and then runs with `--kernel vm`. This kernel has no
# netem, so link delay is not emulated (`--without-delay`; each result table says so).
# Results: target/lab-results/.
cargo build --release -q -p netns-lab -p unbounded-net --bins
lab_bin="$bin_dir/netns-lab"
mkdir -p target/lab-results
"$lab_bin" doctor >/dev/null || status=1
for f in scenarios/*.yaml; do
  name=$(basename "$f" .yaml)
  if grep -q '^kernel: vm' "$f"; then
    if out=$("$lab_bin" scenario "$f" --kernel host 2>&1); then
      echo "lab: $name: expected a refusal in host mode, but it ran"; status=1
    elif grep -q -- '--kernel vm' <<<"$out"; then
      echo "lab: $name: refused in host mode, as it declares kernel: vm"
    else
      echo "lab: $name: failed without naming --kernel vm: $out"; status=1
    fi
    # VM mode (owner: netns-lab/src/vm): the same scenario inside qemu (TCG) on Debian's
    # cloud kernel cached by scripts/setup.sh; a few minutes each. Wall time printed.
    # A guest soft lockup (seen intermittently in security-wins, cause not found; see
    # netns-lab/README.md) panics the guest at once; that one case is retried once, out loud.
    vm_log="target/lab-results/$name-vm.log"
    run_vm() {
      "$lab_bin" scenario "$f" --kernel vm --name "ci-$name" \
        --json "target/lab-results/$name-vm.json" 2>&1 | tee "$vm_log"
    }
    vm_start=$SECONDS
    if run_vm; then
      echo "lab: $name (--kernel vm) passed in $((SECONDS - vm_start)) s"
    elif grep -q "soft lockup" "$vm_log" && echo "lab: $name (--kernel vm): guest soft lockup after $((SECONDS - vm_start)) s; retrying once" && run_vm; then
      echo "lab: $name (--kernel vm) passed on the retry, $((SECONDS - vm_start)) s in all"
    else
      echo "lab: $name (--kernel vm) FAILED after $((SECONDS - vm_start)) s"; status=1
    fi
    continue
  fi
  "$lab_bin" scenario "$f" --without-delay --name "ci-$name" \
    --json "target/lab-results/$name.json" || { echo "lab: $name FAILED"; status=1; }
done
"$lab_bin" scenario scenarios/expressroute.yaml --control-plane kube --name ci-kube \
  --json target/lab-results/expressroute-kube.json || { echo "lab: expressroute (kube) FAILED"; status=1; }
"$lab_bin" down >/dev/null 2>&1 || true
# ---- END netns lab part -------------------------------------------------------------------

exit $status
