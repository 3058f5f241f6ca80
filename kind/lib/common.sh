# shellcheck shell=bash
# Helpers every part of the kind suite uses (sourced by kind/run.sh and by
# tests/kind_manifests.rs, which drives kind/lib/cluster.sh against a real API server).

log() { echo "[kind $(date -u +%T)] $*"; }
die() {
  echo "[kind $(date -u +%T)] ERROR: $*" >&2
  exit 1
}

# wait_until SECONDS WHAT CMD...: polls CMD until it succeeds; dies naming WHAT on timeout.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || die "timed out after ${timeout}s waiting for $what"
    sleep 2
  done
}
