# shellcheck shell=bash
# The checks of kind/run.sh (sourced; uses its globals and helpers).

# netcheck pods: name, pod IP and node, one line each.
netcheck_pods() {
  kubectl -n "$NS_CHECK" get pods -l app.kubernetes.io/name=netcheck \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{"\n"}{end}'
}

# The netcheck pod on node $1 (dies when there is none; call as `var=$(pod_on N)`).
pod_on() {
  local pod
  pod=$(netcheck_pods | awk -v n="$1" '$3 == n {print $1}')
  [[ -n $pod ]] || die "no netcheck pod on node $1"
  echo "$pod"
}
pod_ip() { kubectl -n "$NS_CHECK" get pod "$1" -o jsonpath='{.status.podIP}'; }

# Runs in a netcheck pod: for each IP=NAME argument, HTTP GET /hostname must answer NAME
# (the right pod, over TCP) and two pings must come back. Prints one line per probe.
# shellcheck disable=SC2016 # expanded by the pod's shell
PROBE_SCRIPT='
fail=0
for t in "$@"; do
  ip=${t%%=*}; want=${t#*=}
  got=$(curl -s --max-time 3 "http://$ip:8080/hostname") || got=""
  if [ "$got" = "$want" ]; then echo "tcp  $ip ok"; else echo "tcp  $ip FAIL (answer: ${got:-none})"; fail=1; fi
  if ping -c 2 -W 2 "$ip" >/dev/null 2>&1; then echo "icmp $ip ok"; else echo "icmp $ip FAIL"; fail=1; fi
done
exit $fail'

# Every pod reaches every pod (itself, same node, same Site, other Site) by TCP and ICMP.
# Routes converge after the agents start, so the matrix is retried for up to 3 minutes.
check_all_pairs() {
  local rows targets=() src start deadline matrix=$ARTIFACTS/all-pairs.txt ok
  mapfile -t rows < <(netcheck_pods)
  local nodes
  nodes=$(kubectl get nodes --no-headers | wc -l)
  ((${#rows[@]} == nodes)) || die "expected one netcheck pod per node ($nodes), found ${#rows[@]}"
  local name ip node
  for row in "${rows[@]}"; do
    read -r name ip node <<<"$row"
    [[ -n $ip ]] || die "netcheck pod $name on $node has no IP"
    targets+=("$ip=$name")
  done
  start=$(date +%s)
  deadline=$((start + 180))
  while :; do
    ok=1
    : >"$matrix"
    for row in "${rows[@]}"; do
      read -r src _ node <<<"$row"
      echo "# from $src on $node" >>"$matrix"
      kubectl -n "$NS_CHECK" exec "$src" -- sh -c "$PROBE_SCRIPT" sh "${targets[@]}" >>"$matrix" 2>&1 || ok=0
    done
    if ((ok)); then
      log "all $((${#rows[@]} * ${#rows[@]})) pod pairs reach each other (TCP + ICMP), $(($(date +%s) - start)) s after the first try"
      return
    fi
    if (($(date +%s) >= deadline)); then
      cat "$matrix"
      die "pod-to-pod connectivity incomplete after 180 s (matrix above, also in $matrix)"
    fi
    sleep 5
  done
}

# Background traffic from pod $1 to pod $2 for $3 seconds: an HTTP request every 0.2 s (each a
# new TCP connection; the answer must name the target pod) and 5 pings per second. Results
# go to $4.http and $4.ping; the PIDs join BG_PIDS so the exit trap can stop them.
start_traffic() {
  local src=$1 dst=$2 secs=$3 out=$4 ip
  ip=$(pod_ip "$dst")
  # shellcheck disable=SC2016 # expanded by the pod's shell
  kubectl -n "$NS_CHECK" exec "$src" -- sh -c '
    end=$(( $(date +%s) + $2 )); ok=0; fail=0
    while [ "$(date +%s)" -lt "$end" ]; do
      if [ "$(curl -s --max-time 1 "http://$1:8080/hostname")" = "$3" ]; then ok=$((ok+1));
      else fail=$((fail+1)); echo "miss at $(date +%T)"; fi
      sleep 0.2
    done
    echo "ok=$ok fail=$fail"' sh "$ip" "$secs" "$dst" >"$out.http" 2>&1 &
  BG_PIDS+=($!)
  TRAFFIC_PIDS=($!)
  kubectl -n "$NS_CHECK" exec "$src" -- ping -c $((secs * 5)) -i 0.2 -W 1 "$ip" >"$out.ping" 2>&1 &
  BG_PIDS+=($!)
  TRAFFIC_PIDS+=($!)
}

# Waits for start_traffic's processes and fails on any lost request or ping.
expect_no_loss() {
  local out=$1 what=$2 pid sent got
  for pid in "${TRAFFIC_PIDS[@]}"; do
    wait "$pid" || true
  done
  grep -q '^ok=[1-9][0-9]* fail=0$' "$out.http" ||
    die "$what: HTTP requests failed: $(tail -5 "$out.http" | tr '\n' ' ')"
  read -r sent got < <(awk '/packets transmitted/ {print $1, $4}' "$out.ping") || true
  [[ -n ${sent:-} && $sent -gt 0 && $sent == "$got" ]] ||
    die "$what: pings lost: $(grep -h 'packets' "$out.ping")"
  log "$what: $(tail -1 "$out.http"), $sent/$sent pings answered"
}

# Cross-site traffic leaves each node only as WireGuard: capture on the kind bridge while a
# pod of Site A (not a gateway) talks to a pod of Site B (not a gateway), then require
# WireGuard data packets on each of the three legs (node -> gw A -> gw B -> node), no packet
# with pod addresses in its outer header, and no trace of the request's marker in clear.
check_wireguard_on_wire() {
  local src_node=${SITE_A_NODES[0]} dst_node=${SITE_B_NODES[1]} src dst dst_ip bridge pcap marker port
  src=$(pod_on "$src_node")
  dst=$(pod_on "$dst_node")
  dst_ip=$(pod_ip "$dst")
  bridge=br-$(docker network inspect kind -f '{{.Id}}' | cut -c1-12)
  ip link show "$bridge" >/dev/null || die "no bridge $bridge for the docker network 'kind'"
  port=$(kubectl get gatewaypool kind-gw-a -o jsonpath='{.status.nodes[0].wireGuardPort}')
  port=${port:-51820}
  pcap=$ARTIFACTS/cross-site.pcap
  marker="unbounded-kind-marker-$RANDOM$RANDOM"
  # -Z root: Ubuntu's tcpdump otherwise drops to its own user, which cannot write here.
  $SUDO timeout 20 tcpdump -Z root -i "$bridge" -nn -U -s 0 -w "$pcap" >"$ARTIFACTS/tcpdump.log" 2>&1 &
  local capture=$!
  BG_PIDS+=("$capture")
  wait_until 10 "tcpdump to listen on $bridge" grep -q 'listening on' "$ARTIFACTS/tcpdump.log"
  # shellcheck disable=SC2016 # expanded by the pod's shell
  kubectl -n "$NS_CHECK" exec "$src" -- sh -c '
    for i in 1 2 3 4 5 6 7 8 9 10; do
      curl -s --max-time 2 "http://$1:8080/echo?msg=$2" >/dev/null; ping -c 1 -W 1 "$1" >/dev/null
    done' sh "$dst_ip" "$marker" || true
  wait "$capture" || true
  $SUDO chmod a+r "$pcap"
  count() { tcpdump -r "$pcap" -nn "$1" 2>/dev/null | wc -l; }
  local a b leg n clear inner
  for leg in "$(node_ip "$src_node") $(node_ip "$GW_A")" "$(node_ip "$GW_A") $(node_ip "$GW_B")" \
    "$(node_ip "$GW_B") $(node_ip "$dst_node")"; do
    read -r a b <<<"$leg"
    # udp[8] = 4: a WireGuard transport data message.
    n=$(count "udp port $port and udp[8] = 4 and host $a and host $b")
    ((n > 0)) || die "no WireGuard data packets between $a and $b during cross-site traffic (pcap: $pcap)"
    log "WireGuard leg $a <-> $b: $n data packets"
  done
  inner=$(count "(icmp or tcp port 8080) and net 10.244.0.0/16")
  ((inner == 0)) || die "$inner packets with pod addresses crossed the kind network unencapsulated (pcap: $pcap)"
  clear=$(tcpdump -r "$pcap" -nn -A 2>/dev/null | grep -c -- "$marker" || true)
  ((clear == 0)) || die "the marker $marker crossed the kind network in clear $clear times (pcap: $pcap)"
  log "cross-site traffic $src -> $dst was WireGuard on every leg; marker never seen in clear"
}

lease_holder() {
  kubectl -n "$NS_SYSTEM" get lease unbounded-net-controller -o jsonpath='{.spec.holderIdentity}'
}

leader_moved_from() { # old
  local now
  now=$(lease_holder)
  [[ -n $now && $now != "$1" ]] && kubectl -n "$NS_SYSTEM" get pod "$now" >/dev/null
}

# Delete the leading controller pod while cross-site traffic flows: the standby takes the
# Lease, and no request or ping is lost (the data plane does not depend on the controller).
check_leader_failover() {
  local holder src dst out=$ARTIFACTS/failover t0
  holder=$(lease_holder)
  [[ -n $holder ]] || die "no holder in Lease $NS_SYSTEM/unbounded-net-controller"
  kubectl -n "$NS_SYSTEM" get pod "$holder" >/dev/null || die "Lease holder '$holder' is not a controller pod"
  src=$(pod_on "${SITE_A_NODES[0]}")
  dst=$(pod_on "${SITE_B_NODES[1]}")
  start_traffic "$src" "$dst" 45 "$out"
  sleep 3
  t0=$(date +%s)
  kubectl -n "$NS_SYSTEM" delete pod "$holder" --wait=false
  wait_until 90 "another controller to take the Lease from $holder" leader_moved_from "$holder"
  log "leader moved from $holder to $(lease_holder) in $(($(date +%s) - t0)) s"
  expect_no_loss "$out" "leader failover"
  kubectl -n "$NS_SYSTEM" rollout status deploy/unbounded-net-controller --timeout=120s
}

agent_on() {
  kubectl -n "$NS_SYSTEM" get pods -l app.kubernetes.io/name=unbounded-net-node \
    --field-selector "spec.nodeName=$1" -o jsonpath='{.items[0].metadata.name}'
}

agent_replaced() { # node old
  local now
  now=$(agent_on "$1")
  [[ -n $now && $now != "$2" ]] &&
    [[ $(kubectl -n "$NS_SYSTEM" get pod "$now" -o jsonpath='{.status.containerStatuses[0].ready}') == true ]]
}

# Restart the agent on Site A's gateway (the cross-site traffic transits it) under load: the
# kernel state stays while the agent is away and the new agent adopts it, so nothing is lost.
check_agent_restart() {
  local agent src dst out=$ARTIFACTS/agent-restart t0
  agent=$(agent_on "$GW_A")
  [[ -n $agent ]] || die "no agent pod on $GW_A"
  src=$(pod_on "${SITE_A_NODES[0]}")
  dst=$(pod_on "${SITE_B_NODES[1]}")
  # 90 s: the agent has no SIGTERM handler and runs as PID 1, which the kernel shields from
  # SIGTERM, so the kubelet likely waits out the 30 s grace period before SIGKILL.
  start_traffic "$src" "$dst" 90 "$out"
  sleep 3
  t0=$(date +%s)
  kubectl -n "$NS_SYSTEM" delete pod "$agent" --wait=true --timeout=60s
  wait_until 90 "a new agent on $GW_A" agent_replaced "$GW_A" "$agent"
  log "agent on $GW_A replaced ($agent -> $(agent_on "$GW_A")) in $(($(date +%s) - t0)) s"
  # The traffic must outlive the restart by a margin, or "no loss" would prove nothing about
  # the new agent taking over.
  (($(date +%s) - t0 < 75)) || die "the agent restart took longer than the 90 s traffic window allows"
  expect_no_loss "$out" "agent restart on $GW_A"
}
