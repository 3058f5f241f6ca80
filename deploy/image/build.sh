#!/usr/bin/env bash
# Builds the image the manifests name (ghcr.io/unbounded-cloud/unbounded-net:<newTag from
# deploy/kustomization.yaml>) as an OCI image archive, with no container engine: the release
# binaries plus the host tools the node agent calls (nft for masquerade, boringtun-cli for
# userspace WireGuard, mount for bpffs) and exactly the shared libraries `ldd` names.
#
#   deploy/image/build.sh [OUT.tar]     default: $CARGO_TARGET_DIR/image/unbounded-net.oci.tar
#
# The archive is both an OCI image layout and a `docker load` archive (it carries a
# docker-style manifest.json), so `docker load -i`, `kind load image-archive`, `skopeo copy
# oci-archive:…` and `ctr images import` all take it. Reproducible: fixed mtimes, owners and
# file order, so the same binaries give the same digest. deploy/image/check.sh verifies it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

target=${CARGO_TARGET_DIR:-target}
out=${1:-$target/image/unbounded-net.oci.tar}
repo=ghcr.io/unbounded-cloud/unbounded-net
tag=$(sed -n 's/^ *newTag: *//p' deploy/kustomization.yaml | head -1)
[[ -n $tag ]] || { echo "no newTag in deploy/kustomization.yaml" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null || { echo "$1 not found: run scripts/setup.sh" >&2; exit 1; }
}
for t in nft boringtun-cli mount ldd tar gzip sha256sum python3; do need "$t"; done

# The same package set as the lab's release build, so CI (which ran that first) builds once:
# features unify over the selected packages, and another set would rebuild the crate.
cargo build --release -q -p netns-lab -p unbounded-net --bins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/usr/sbin" "$root/usr/bin" "$root/tmp" \
  "$root/etc/cni/net.d" "$root/var/lib/unbounded-net" "$root/var/run/wireguard" "$root/sys/fs/bpf"
chmod 1777 "$root/tmp"
install -m 0755 "$target/release/unbounded-net-controller" "$target/release/unbounded-net-node" \
  "$root/usr/local/bin/"
install -m 0755 "$(command -v boringtun-cli)" "$root/usr/local/bin/boringtun-cli"
install -m 0755 "$(command -v nft)" "$root/usr/sbin/nft"
install -m 0755 "$(command -v mount)" "$root/usr/bin/mount"
# Every library the binaries load, at the path the dynamic loader looks for it.
for bin in "$root"/usr/local/bin/* "$root"/usr/sbin/nft "$root"/usr/bin/mount; do
  ldd "$bin" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

blobs=$work/oci/blobs/sha256
mkdir -p "$blobs"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"
layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
mv "$work/layer.tar.gz" "$blobs/$layer"

REPO=$repo TAG=$tag DIFF_ID=$diff_id LAYER=$layer BLOBS=$blobs OCI=$work/oci python3 - <<'EOF'
import hashlib, json, os

blobs, oci = os.environ["BLOBS"], os.environ["OCI"]
ref = f'{os.environ["REPO"]}:{os.environ["TAG"]}'

def put(obj):
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    with open(f"{blobs}/{digest}", "wb") as f:
        f.write(body)
    return digest, len(body)

config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "1970-01-01T00:00:00Z",
    "config": {
        "Entrypoint": ["/usr/local/bin/unbounded-net-node"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Labels": {"org.opencontainers.image.source": "https://github.com/unbounded-cloud/unbounded-net"},
    },
    "rootfs": {"type": "layers", "diff_ids": [f'sha256:{os.environ["DIFF_ID"]}']},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "deploy/image/build.sh"}],
}
cfg_digest, cfg_size = put(config)
layer = os.environ["LAYER"]
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": f"sha256:{cfg_digest}", "size": cfg_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{layer}", "size": os.path.getsize(f"{blobs}/{layer}")}],
}
man_digest, man_size = put(manifest)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": f"sha256:{man_digest}", "size": man_size,
                   "annotations": {"org.opencontainers.image.ref.name": os.environ["TAG"],
                                   "io.containerd.image.name": ref}}],
}
with open(f"{oci}/index.json", "w") as f:
    json.dump(index, f, sort_keys=True)
with open(f"{oci}/oci-layout", "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
# docker load reads this file (gzip layers are fine for it).
with open(f"{oci}/manifest.json", "w") as f:
    json.dump([{"Config": f"blobs/sha256/{cfg_digest}", "RepoTags": [ref],
                "Layers": [f"blobs/sha256/{layer}"]}], f)
print(f"{ref} manifest sha256:{man_digest}")
EOF

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$out" .
echo "image archive: $out ($(du -h "$out" | cut -f1))"
