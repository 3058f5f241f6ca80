#!/usr/bin/env bash
# Start a throw-away control plane by hand: etcd + kube-apiserver on loopback with fresh
# certificates, our CRDs installed. Prints the kubeconfig path; Ctrl-C stops both processes
# and removes the directory. (The Rust tests use tests/support/apiserver.rs instead.)
#   controlplane/run.sh [port]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$("$HERE/build.sh")"
PORT="${1:-6443}"
DIR="$(mktemp -d /tmp/unbounded-cp.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

cd "$DIR"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
cert() { # name subject extensions
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  printf '%b' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
key ca.key
openssl req -x509 -new -key ca.key -subj /CN=unbounded-net-dev-ca -days 2 -out ca.crt 2>/dev/null
cert serving /CN=kube-apiserver "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth\n"
key sa.key && openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null

ETCD_PORT=$((PORT + 1000)); PEER_PORT=$((PORT + 1001))
"$BIN/etcd" --name=dev --data-dir="$DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="dev=http://127.0.0.1:$PEER_PORT" --unsafe-no-fsync --log-level=warn >"$DIR/etcd.log" 2>&1 &
pids+=($!)
"$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 --endpoint-reconciler-type=none --secure-port="$PORT" \
  --cert-dir="$DIR/certs" --tls-cert-file=serving.crt --tls-private-key-file=serving.key \
  --client-ca-file=ca.crt --service-account-key-file=sa.pub --service-account-signing-key-file=sa.key \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=RBAC --allow-privileged=true \
  --enable-priority-and-fairness=false --profiling=false >"$DIR/apiserver.log" 2>&1 &
pids+=($!)

cat > kubeconfig <<KC
apiVersion: v1
kind: Config
clusters: [{name: dev, cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: $DIR/ca.crt}}]
users: [{name: admin, user: {client-certificate: $DIR/admin.crt, client-key: $DIR/admin.key}}]
contexts: [{name: dev, context: {cluster: dev, user: admin}}]
current-context: dev
KC
export KUBECONFIG="$DIR/kubeconfig"
for _ in $(seq 1 120); do
  "$BIN/kubectl" get --raw=/readyz >/dev/null 2>&1 && break
  sleep 0.5
done
"$BIN/kubectl" get --raw=/readyz >/dev/null || { tail -20 "$DIR/apiserver.log"; exit 1; }
"$BIN/kubectl" apply -f "$HERE/../deploy/crds/crds.yaml" >/dev/null
"$BIN/kubectl" wait --for=condition=Established crd --all --timeout=60s >/dev/null
echo "control plane up: export KUBECONFIG=$DIR/kubeconfig  (kubectl: $BIN/kubectl)"
echo "logs in $DIR/*.log; Ctrl-C to stop and clean up"
wait "${pids[@]}"
