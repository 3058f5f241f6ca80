#!/usr/bin/env bash
# Verifies an image archive from deploy/image/build.sh: every blob matches its digest, the
# index → manifest → config/layer chain is whole, the config's diff_id is the uncompressed
# layer's, and the binaries in the layer run (in a chroot of the unpacked root filesystem).
#   deploy/image/check.sh ARCHIVE
set -euo pipefail
archive=${1:?usage: deploy/image/check.sh ARCHIVE}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xf "$archive" -C "$work"

for blob in "$work"/blobs/sha256/*; do
  want=$(basename "$blob")
  got=$(sha256sum "$blob" | cut -d' ' -f1)
  [[ $want == "$got" ]] || { echo "blob $want has digest $got" >&2; exit 1; }
done

layer=$(OCI=$work python3 - <<'EOF'
import json, os, sys
oci = os.environ["OCI"]
def blob(d):
    return f'{oci}/blobs/sha256/{d.split(":", 1)[1]}'
index = json.load(open(f"{oci}/index.json"))
assert json.load(open(f"{oci}/oci-layout"))["imageLayoutVersion"] == "1.0.0"
[entry] = index["manifests"]
assert entry["annotations"]["io.containerd.image.name"].startswith("ghcr.io/unbounded-cloud/unbounded-net:")
manifest = json.load(open(blob(entry["digest"])))
assert os.path.getsize(blob(entry["digest"])) == entry["size"]
config = json.load(open(blob(manifest["config"]["digest"])))
assert config["os"] == "linux" and config["architecture"] == "amd64"
[layer] = manifest["layers"]
assert os.path.getsize(blob(layer["digest"])) == layer["size"]
docker = json.load(open(f"{oci}/manifest.json"))
assert docker[0]["Layers"] == [f'blobs/sha256/{layer["digest"].split(":", 1)[1]}']
print(blob(layer["digest"]), config["rootfs"]["diff_ids"][0].split(":", 1)[1])
EOF
)
read -r layer_path diff_id <<<"$layer"
got=$(gzip -dc "$layer_path" | sha256sum | cut -d' ' -f1)
[[ $got == "$diff_id" ]] || { echo "layer diff_id $diff_id, content $got" >&2; exit 1; }

rootfs=$work/rootfs
mkdir -p "$rootfs"
gzip -dc "$layer_path" | tar -x -C "$rootfs"
# Each binary starts with only the image's own files (a missing library fails here).
chroot "$rootfs" /usr/local/bin/unbounded-net-node --help >/dev/null
chroot "$rootfs" /usr/local/bin/unbounded-net-controller --help >/dev/null
chroot "$rootfs" /usr/local/bin/boringtun-cli --version >/dev/null
chroot "$rootfs" /usr/sbin/nft --version >/dev/null
chroot "$rootfs" /usr/bin/mount --version >/dev/null
echo "image ok: $(du -h "$archive" | cut -f1), layer sha256:${diff_id:0:12}…, binaries run from the image's own root"
