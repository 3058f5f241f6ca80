#!/usr/bin/env bash
# Build the upstream control-plane binaries our integration tests run against:
# kube-apiserver and kubectl (Kubernetes $K8S_VERSION) and etcd ($ETCD_VERSION),
# from pinned Go module versions via the Go module proxy. Binaries are cached in
# $UNBOUNDED_CP_CACHE/<version>/ (default /var/cache/unbounded-net/controlplane),
# so a second run is instant. Prints the directory holding the binaries last (stdout);
# progress goes to stderr, a line every 30 s while Go compiles (about 10 min on 2 cores).
# Run by scripts/test.sh before the API-server tests and by netns-lab for
# `--control-plane kube` when the binaries are missing; concurrent runs wait for each other.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
VERSION="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${UNBOUNDED_CP_CACHE:-/var/cache/unbounded-net/controlplane}"
OUT="${CACHE_ROOT}/${VERSION}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
# shellcheck source-path=SCRIPTDIR source=../scripts/heartbeat.sh
source "$HERE/../scripts/heartbeat.sh"

cached() {
    if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && -x "$OUT/kubectl" ]]; then
        echo "control-plane binaries cached in $OUT (build time 0s)" >&2
        echo "$OUT"
        return 0
    fi
    return 1
}
cached && exit 0

command -v "$GO" >/dev/null || { echo "build.sh: Go not found (set GO=/path/to/go)" >&2; exit 1; }
mkdir -p "$OUT"
# One build at a time (netns-lab and scripts/test.sh may both ask): the second waits, then
# finds the cache filled.
exec 9>"${OUT}.lock"
if ! flock -n 9; then
    echo "build.sh: another controlplane/build.sh is building into $OUT; waiting for it" >&2
    flock 9
fi
cached && exit 0
TMP="$(mktemp -d "${OUT}.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
NICE=(nice -n "${UNBOUNDED_CP_NICE:-10}")
start=$(date +%s)

# kube-apiserver and kubectl report this version (discovery, `kubectl version`).
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    ldflags+=" -X ${pkg}.gitTreeState=clean"
done

# `go build -v` names each package it compiles: the heartbeat counts them (a package path is
# one word; "go: downloading ..." lines are not).
echo "building kube-apiserver + kubectl ${K8S_VERSION} (about 9 min on 2 cores) ..." >&2
(cd "$HERE/kube" && heartbeat "kube-apiserver + kubectl (packages)" "$TMP/kube.log" '^[^ ]+$' \
    "${NICE[@]}" "$GO" build -v -mod=readonly -trimpath -ldflags "$ldflags" \
    -o "$TMP/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
echo "building etcd ${ETCD_VERSION} (about 1 min) ..." >&2
(cd "$HERE/etcd" && heartbeat "etcd (packages)" "$TMP/etcd.log" '^[^ ]+$' \
    "${NICE[@]}" "$GO" build -v -mod=readonly -trimpath -ldflags "-s -w" -o "$TMP/etcd" .)

"$TMP/kube-apiserver" --version >&2
"$TMP/etcd" --version >&2
mv "$TMP/kube-apiserver" "$TMP/kubectl" "$TMP/etcd" "$OUT/"
secs=$(( $(date +%s) - start ))
echo "$secs" > "$OUT/build-seconds"
echo "control-plane binaries built in ${secs}s into $OUT" >&2
echo "$OUT"
