#!/usr/bin/env bash
# Scenario tests, as CI runs them (called by scripts/test.sh when executable).
#   scripts/test-scenarios.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
status=0

# ---- BEGIN simulator part (owner: sim/) --------------------------------------------------
# Every scenario once with its own timeline, then a sweep of random-fault seeds over every
# scenario (40 seeds each, >= 200 runs in all). Each run prints one PASS/FAIL line; a failed
# run also prints its expectation table, violation and replay command.
SIM_SEEDS=${SIM_SEEDS:-1..41}
cargo build --release -q -p sim
sim_bin=target/release/sim
for f in scenarios/*.yaml; do
  "$sim_bin" scenario "$f" --seed 1 || status=1
done
for f in scenarios/*.yaml; do
  "$sim_bin" scenario "$f" --seeds "$SIM_SEEDS" --faults random || status=1
done
# ---- END simulator part -------------------------------------------------------------------

exit $status
