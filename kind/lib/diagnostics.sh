# shellcheck shell=bash
# What kind/run.sh collects when a phase fails (sourced; uses its globals). Every step is
# best effort: a missing tool or a dead node costs one file, not the rest of the dump.

# capture FILE CMD...: CMD's stdout and stderr into $ARTIFACTS/diag/FILE.
capture() {
  local file=$ARTIFACTS/diag/$1
  shift
  mkdir -p "$(dirname "$file")"
  "$@" >"$file" 2>&1 || echo "(exit $?)" >>"$file"
}

# In a kind node's network namespace, with this host's tools (the node image has no wg,
# tcpdump or nft of its own).
in_node() {
  local node=$1 pid
  shift
  pid=$(docker inspect -f '{{.State.Pid}}' "$node") || return 1
  $SUDO nsenter -t "$pid" -n "$@"
}

tc_filters() {
  local node=$1 dev
  for dev in $(in_node "$node" ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
    echo "## $dev"
    in_node "$node" tc filter show dev "$dev" ingress
    in_node "$node" tc filter show dev "$dev" egress
  done
}

dump_node() {
  local node=$1 d=nodes/$1
  capture "$d/ip-addr.txt" in_node "$node" ip -d addr
  capture "$d/ip-link.txt" in_node "$node" ip -d -s link
  capture "$d/ip-route.txt" in_node "$node" ip route show table all
  capture "$d/ip6-route.txt" in_node "$node" ip -6 route show table all
  capture "$d/ip-rule.txt" in_node "$node" ip rule
  capture "$d/wg-show.txt" in_node "$node" wg show all
  capture "$d/tc-filters.txt" tc_filters "$node"
  capture "$d/nft-ruleset.txt" in_node "$node" nft list ruleset
  capture "$d/cni-conf.txt" docker exec "$node" sh -c 'ls -l /etc/cni/net.d /opt/cni/bin; cat /etc/cni/net.d/*'
  capture "$d/kubelet.log" docker exec "$node" journalctl -u kubelet --no-pager -n 2000
  capture "$d/containerd.log" docker exec "$node" journalctl -u containerd --no-pager -n 500
}

dump_pod_logs() {
  local ns=$1 selector=$2 pod
  for pod in $(kubectl -n "$ns" get pods -l "$selector" -o jsonpath='{.items[*].metadata.name}'); do
    capture "logs/$ns/$pod.log" kubectl -n "$ns" logs "$pod" --all-containers --timestamps
    capture "logs/$ns/$pod.previous.log" kubectl -n "$ns" logs "$pod" --all-containers --timestamps --previous
    capture "logs/$ns/$pod.describe.txt" kubectl -n "$ns" describe pod "$pod"
  done
}

dump_diagnostics() {
  mkdir -p "$ARTIFACTS/diag"
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "no kind cluster $CLUSTER" >"$ARTIFACTS/diag/README.txt"
    return
  fi
  capture nodes.txt kubectl get nodes -o wide --show-labels
  capture nodes.yaml kubectl get nodes -o yaml
  capture pods.txt kubectl get pods -A -o wide
  capture events.txt kubectl get events -A --sort-by=.lastTimestamp
  capture unbounded-objects.yaml kubectl get \
    sites,gatewaypools,sitegatewaypoolassignments,sitepeerings,gatewaypoolpeerings,sitenodeslices -o yaml
  capture leases.yaml kubectl -n "$NS_SYSTEM" get leases -o yaml
  capture workloads.txt kubectl -n "$NS_SYSTEM" describe deploy,ds
  dump_pod_logs "$NS_SYSTEM" app.kubernetes.io/name=unbounded-net-controller
  dump_pod_logs "$NS_SYSTEM" app.kubernetes.io/name=unbounded-net-node
  dump_pod_logs "$NS_CHECK" app.kubernetes.io/name=netcheck
  dump_pod_logs kube-system k8s-app=kube-dns
  local node
  for node in $(kind get nodes --name "$CLUSTER"); do
    dump_node "$node"
  done
  capture kind-export.txt kind export logs "$ARTIFACTS/diag/kind-logs" --name "$CLUSTER"
}
