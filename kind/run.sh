#!/usr/bin/env bash
# The kind end-to-end suite: a 4-node kind cluster split into two Sites, unbounded-net as its
# only CNI, and checks of pod connectivity, WireGuard on the wire between Sites, controller
# leader failover and a node agent restart. Needs Docker (GitHub's ubuntu runners have it;
# the project's build machines do not) — see kind/README.md.
#
#   kind/run.sh [--image ARCHIVE] [--keep]   create (or reuse) the cluster, deploy, check;
#                                            the cluster is deleted on exit unless --keep
#   kind/run.sh --delete                     delete the cluster and exit
#
# Environment: KIND_CLUSTER_NAME (unbounded-net), KIND_NODE_IMAGE (pinned below),
# IMAGE_ARCHIVE (else deploy/image/build.sh builds one), ARTIFACTS_DIR (logs, pcap, rendered
# manifests; target/kind-artifacts), CNI_PLUGINS_DIR (where bridge/host-local/portmap/loopback
# are on this host, for nodes that lack them).
set -euo pipefail

KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$KIND_DIR")
CLUSTER=${KIND_CLUSTER_NAME:-unbounded-net}
# kind v0.30.0's image for Kubernetes 1.34.0 (digest from the kind release notes).
NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a}
ARTIFACTS=${ARTIFACTS_DIR:-$REPO/target/kind-artifacts}
IMAGE_ARCHIVE=${IMAGE_ARCHIVE:-}
KEEP=0
DELETE_ONLY=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --image) IMAGE_ARCHIVE=${2:?--image needs a path}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --delete) DELETE_ONLY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "kind/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

# shellcheck source=lib/common.sh
source "$KIND_DIR/lib/common.sh"

need() {
  command -v "$1" >/dev/null || die "$1 not found: $2"
}
need docker "install Docker (kind runs the nodes as containers)"
need kind "install kind (the workflow pins v0.30.0)"

if ((DELETE_ONLY)); then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

need kubectl "install kubectl (the workflow pins v1.34.1)"
need python3 "install python3 (address arithmetic)"
need tcpdump "install tcpdump (the WireGuard-on-the-wire check captures on the kind bridge)"
need nsenter "install util-linux (diagnostics enter the node namespaces)"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  need sudo "run as root or install sudo (tcpdump and nsenter need root)"
  SUDO=sudo
fi

mkdir -p "$ARTIFACTS"
# The cluster's admin credentials stay out of the uploaded artifacts.
KUBE_DIR=$(mktemp -d)
export KUBECONFIG=$KUBE_DIR/kubeconfig
NS_CHECK=unbounded-net-check
NS_SYSTEM=unbounded-net
BG_PIDS=()

# Phase timings: printed as they end and collected in $ARTIFACTS/timings.txt.
SUITE_START=$(date +%s)
PHASE=start
PHASE_START=$SUITE_START
: >"$ARTIFACTS/timings.txt"
phase() {
  local now
  now=$(date +%s)
  echo "$PHASE $((now - PHASE_START))s" >>"$ARTIFACTS/timings.txt"
  log "phase '$PHASE' took $((now - PHASE_START)) s"
  PHASE=$1
  PHASE_START=$now
  log "== $PHASE (t+$((now - SUITE_START)) s)"
}

# shellcheck source=lib/cluster.sh
source "$KIND_DIR/lib/cluster.sh"
# shellcheck source=lib/checks.sh
source "$KIND_DIR/lib/checks.sh"
# shellcheck source=lib/diagnostics.sh
source "$KIND_DIR/lib/diagnostics.sh"

on_exit() {
  local rc=$?
  set +e
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  if ((rc != 0)); then
    log "FAILED in phase '$PHASE' (exit $rc); collecting diagnostics in $ARTIFACTS/diag"
    dump_diagnostics
  fi
  if ((KEEP == 0)) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "deleting kind cluster $CLUSTER (--keep keeps it)"
    kind delete cluster --name "$CLUSTER"
  fi
  if ((KEEP)); then
    log "cluster kept; kubeconfig: kind get kubeconfig --name $CLUSTER"
  fi
  rm -rf "$KUBE_DIR"
  exit "$rc"
}
trap on_exit EXIT

phase cluster
create_cluster
phase cni-plugins
install_cni_plugins
phase image
load_image
phase deploy
deploy_unbounded_net
apply_topology
phase dataplane-ready
wait_for_dataplane
deploy_netcheck
phase all-pairs
check_all_pairs
phase wireguard-on-wire
check_wireguard_on_wire
phase leader-failover
check_leader_failover
phase agent-restart
check_agent_restart
phase report
log "all checks passed in $(($(date +%s) - SUITE_START)) s; timings in $ARTIFACTS/timings.txt"
