# shellcheck shell=bash
# Cluster bring-up for kind/run.sh (sourced; uses its globals and helpers).

# Node groups, filled by apply_topology: the first half of the sorted node names is Site A,
# the rest Site B; the second node of A and the first of B are the gateways, so each Site has
# one gateway and one node whose cross-site traffic must go through it.
SITE_A_NODES=()
SITE_B_NODES=()
GW_A=""
GW_B=""

create_cluster() {
  local created=0
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "reusing kind cluster $CLUSTER"
  else
    kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$KIND_DIR/cluster.yaml"
    created=1
  fi
  kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"
  # The controller allocates pod CIDRs; if kube-controller-manager did too, the first one to
  # write Node.spec.podCIDR would win for good. Check the patch in cluster.yaml took effect.
  docker exec "$CLUSTER-control-plane" grep -q -- '--allocate-node-cidrs=false' \
    /etc/kubernetes/manifests/kube-controller-manager.yaml ||
    die "kube-controller-manager still allocates node CIDRs: the kubeadmConfigPatches in kind/cluster.yaml did not reach its static pod (check the kubeadm config version kind generated)"
  if ((created)); then
    local cidrs
    cidrs=$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.podCIDR}{" "}{end}')
    if grep -q '=[0-9a-f]' <<<"$cidrs"; then
      die "nodes got pod CIDRs before unbounded-net ran: $cidrs"
    fi
  fi
}

cni_plugin_source() {
  local dir
  for dir in ${CNI_PLUGINS_DIR:-} /usr/lib/cni /opt/cni/bin /usr/libexec/cni; do
    if [[ -x $dir/bridge && -x $dir/host-local && -x $dir/portmap && -x $dir/loopback ]]; then
      echo "$dir"
      return
    fi
  done
  die "no CNI plugins on this host: install containernetworking-plugins or set CNI_PLUGINS_DIR"
}

# The agent's conflist uses bridge + host-local + portmap + loopback; kind's node image ships
# only what kindnet needs (no bridge), so copy the missing ones in and make sure they run there.
install_cni_plugins() {
  local node plugin src=""
  for node in $(kind get nodes --name "$CLUSTER"); do
    for plugin in bridge host-local portmap loopback; do
      if ! docker exec "$node" test -x "/opt/cni/bin/$plugin"; then
        [[ -n $src ]] || src=$(cni_plugin_source)
        log "copying $src/$plugin into $node"
        docker cp -L "$src/$plugin" "$node:/opt/cni/bin/$plugin"
      fi
      docker exec -e CNI_COMMAND=VERSION "$node" "/opt/cni/bin/$plugin" </dev/null >/dev/null ||
        die "/opt/cni/bin/$plugin does not run on $node (a host build linked against a newer libc? set CNI_PLUGINS_DIR to static release binaries)"
    done
  done
}

image_ref() {
  local tag
  tag=$(sed -n 's/^ *newTag: *//p' "$REPO/deploy/kustomization.yaml" | head -1)
  echo "ghcr.io/unbounded-cloud/unbounded-net:$tag"
}

load_image() {
  if [[ -z $IMAGE_ARCHIVE ]]; then
    IMAGE_ARCHIVE=$REPO/target/image/unbounded-net.oci.tar
    log "no --image given: building $IMAGE_ARCHIVE with deploy/image/build.sh"
    "$REPO/deploy/image/build.sh" "$IMAGE_ARCHIVE"
  fi
  [[ -f $IMAGE_ARCHIVE ]] || die "image archive $IMAGE_ARCHIVE does not exist"
  kind load image-archive "$IMAGE_ARCHIVE" --name "$CLUSTER"
  local ref node
  ref=$(image_ref)
  for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" crictl inspecti "$ref" >/dev/null ||
      die "$ref is not in $node after loading $IMAGE_ARCHIVE (does the archive name that tag?)"
  done
}

deploy_unbounded_net() {
  kubectl apply -k "$REPO/deploy"
  kubectl wait --for=condition=Established --timeout=60s \
    crd/sites.net.unbounded-cloud.io crd/gatewaypools.net.unbounded-cloud.io \
    crd/sitegatewaypoolassignments.net.unbounded-cloud.io crd/gatewaypoolpeerings.net.unbounded-cloud.io
}

node_ip() {
  kubectl get node "$1" -o jsonpath='{range .status.addresses[?(@.type=="InternalIP")]}{.address}{"\n"}{end}' |
    grep -m1 '\.' || die "node $1 has no IPv4 InternalIP"
}

kind_subnet() {
  docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}}{{"\n"}}{{end}}' | grep -m1 '\.' ||
    die "the docker network 'kind' has no IPv4 subnet"
}

# "a/32, b/32" for the given nodes, each checked to sit in the kind network's subnet.
node_cidrs() {
  local subnet=$1 node ip out=()
  shift
  for node in "$@"; do
    ip=$(node_ip "$node")
    python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' \
      "$ip" "$subnet" || die "node $node ($ip) is outside the kind network $subnet"
    out+=("$ip/32")
  done
  local joined
  joined=$(printf '%s, ' "${out[@]}")
  echo "${joined%, }"
}

apply_topology() {
  local nodes subnet half
  mapfile -t nodes < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort)
  ((${#nodes[@]} == 4)) || die "expected 4 nodes (kind/cluster.yaml), found ${#nodes[@]}: ${nodes[*]}"
  half=$((${#nodes[@]} / 2))
  SITE_A_NODES=("${nodes[@]:0:half}")
  SITE_B_NODES=("${nodes[@]:half}")
  GW_A=${SITE_A_NODES[1]}
  GW_B=${SITE_B_NODES[0]}
  subnet=$(kind_subnet)
  log "kind network $subnet; site A: ${SITE_A_NODES[*]} (gateway $GW_A); site B: ${SITE_B_NODES[*]} (gateway $GW_B)"
  kubectl label node "$GW_A" "$GW_B" unbounded-cloud.io/unbounded-net-gateway=true --overwrite
  local rendered=$ARTIFACTS/topology.yaml cidrs_a cidrs_b
  # Plain assignments, so a failure inside node_cidrs stops here (set -e).
  cidrs_a=$(node_cidrs "$subnet" "${SITE_A_NODES[@]}")
  cidrs_b=$(node_cidrs "$subnet" "${SITE_B_NODES[@]}")
  sed -e "s|@SITE_A_NODE_CIDRS@|$cidrs_a|" -e "s|@SITE_B_NODE_CIDRS@|$cidrs_b|" \
    "$KIND_DIR/manifests/topology.yaml.in" >"$rendered"
  ! grep -q '@[A-Z_]*@' "$rendered" || die "unrendered placeholder in $rendered"
  kubectl apply -f "$rendered"
}

node_in_site() { # node site block
  local label cidr
  label=$(kubectl get node "$1" -o jsonpath='{.metadata.labels.net\.unbounded-cloud\.io/site}')
  cidr=$(kubectl get node "$1" -o jsonpath='{.spec.podCIDR}')
  [[ $label == "$2" && -n $cidr ]] &&
    python3 -c 'import ipaddress,sys; sys.exit(not ipaddress.ip_network(sys.argv[1]).subnet_of(ipaddress.ip_network(sys.argv[2])))' "$cidr" "$3"
}

pool_members_are() { # pool node
  [[ $(kubectl get gatewaypool "$1" -o jsonpath='{.status.nodes[*].name}') == "$2" ]]
}

# What the controller must have done with the topology: every node labelled with its Site
# and holding a pod CIDR from that Site's block, each pool holding exactly its gateway.
wait_for_control_plane() {
  local node
  for node in "${SITE_A_NODES[@]}"; do
    wait_until 120 "$node in kind-site-a with a pod CIDR from 10.244.0.0/17" node_in_site "$node" kind-site-a 10.244.0.0/17
  done
  for node in "${SITE_B_NODES[@]}"; do
    wait_until 120 "$node in kind-site-b with a pod CIDR from 10.244.128.0/17" node_in_site "$node" kind-site-b 10.244.128.0/17
  done
  wait_until 120 "GatewayPool kind-gw-a to hold exactly $GW_A" pool_members_are kind-gw-a "$GW_A"
  wait_until 120 "GatewayPool kind-gw-b to hold exactly $GW_B" pool_members_are kind-gw-b "$GW_B"
}

wait_for_dataplane() {
  kubectl -n "$NS_SYSTEM" rollout status deploy/unbounded-net-controller --timeout=300s
  kubectl -n "$NS_SYSTEM" rollout status ds/unbounded-net-node --timeout=300s
  wait_for_control_plane
  kubectl wait --for=condition=Ready nodes --all --timeout=300s
  # CoreDNS is the first ordinary pod: it needs the CNI config the agents wrote.
  kubectl -n kube-system rollout status deploy/coredns --timeout=300s
}

deploy_netcheck() {
  kubectl apply -f "$KIND_DIR/manifests/netcheck.yaml"
  kubectl -n "$NS_CHECK" rollout status ds/netcheck --timeout=300s
}
