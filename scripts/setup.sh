#!/usr/bin/env bash
# One idempotent setup for a fresh Debian 12 machine (root). Fast when everything is present.
#   scripts/setup.sh            what building the workspace and running the lab need
#   scripts/setup.sh --quick    without bpf-linker (the kind workflow installs its own)
# The Go-built control plane (kube-apiserver, etcd, kubectl: ~10 min once) is not built here:
# only `--control-plane kube` and the API-server tests use it, and they build it on first use
# (netns-lab runs controlplane/build.sh itself; scripts/test.sh runs it as its own phase).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=heartbeat.sh
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

NIGHTLY="nightly-2026-05-20"          # ENVIRONMENT.md: LLVM 22.1.4, matches Debian's llvm-22
BPF_LINKER_VERSION="0.13.0"
BORINGTUN_VERSION="0.7.1"
APT_PACKAGES=(
  iproute2 iputils-ping iperf3 tcpdump nftables iptables
  wireguard-tools containernetworking-plugins
  qemu-system-x86 busybox-static kmod cpio bpftool
  llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
  pkg-config ca-certificates openssl shellcheck
)

setup_start=$SECONDS
step_start=$SECONDS
phase() {
  echo "setup: $1 ($((SECONDS - step_start)) s; $((SECONDS - setup_start)) s so far)"
  step_start=$SECONDS
}
build_log=$(mktemp /tmp/unbounded-setup.XXXXXX)
trap 'rm -f "$build_log"' EXIT

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: must run as root (it installs Debian packages and creates network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
phase "debian packages ok"

# ---- netns-lab VM mode (`--kernel vm`) ------------------------------------------------------
# Debian's cloud kernel has the WireGuard, GENEVE, IPIP and dummy modules this host kernel lacks.
# Unpacked once into /var/cache/unbounded-net/vm-kernel/<release>/ (boot/vmlinuz-<release> and
# lib/modules/<release>/ with the modules.dep the .deb does not ship); skipped when present.
vm_kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
VM_PKG=$(vm_kernel_pkg)
[[ -n "$VM_PKG" ]] || { apt-get update -qq; VM_PKG=$(vm_kernel_pkg); }
if [[ -z "$VM_PKG" ]]; then
  echo "setup: cannot resolve linux-image-cloud-amd64 with apt-cache; netns-lab --kernel vm will be unavailable" >&2
else
  VM_REL=${VM_PKG#linux-image-}
  VM_DIR="/var/cache/unbounded-net/vm-kernel/$VM_REL"
  if [[ ! -f "$VM_DIR/boot/vmlinuz-$VM_REL" ]]; then
    echo "setup: fetching $VM_PKG for netns-lab --kernel vm"
    mkdir -p /var/cache/unbounded-net
    vm_tmp=$(mktemp -d /var/cache/unbounded-net/vm-kernel.XXXXXX) && chmod 755 "$vm_tmp"  # apt's _apt user writes here
    (cd "$vm_tmp" && apt-get download -qq "$VM_PKG" && dpkg -x ./*.deb root)
    depmod -b "$vm_tmp/root" "$VM_REL"
    mkdir -p "$(dirname "$VM_DIR")"
    rm -rf "$VM_DIR" && mv "$vm_tmp/root" "$VM_DIR" && rm -rf "$vm_tmp"
  fi
  phase "VM kernel ok ($VM_DIR)"
fi
# ---- end netns-lab VM mode ------------------------------------------------------------------

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
  echo "setup: rustup not found; install Rust with rustup first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
if ! rustup toolchain list | grep -q "^$NIGHTLY"; then
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
elif ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain "$NIGHTLY"
fi
phase "rust toolchains ok ($NIGHTLY with rust-src)"

if ! command -v boringtun-cli >/dev/null || ! boringtun-cli --version 2>/dev/null | grep -q "$BORINGTUN_VERSION"; then
  echo "setup: building boringtun-cli $BORINGTUN_VERSION (userspace WireGuard; this kernel may lack it; about a minute)"
  heartbeat "boringtun-cli" "$build_log" '^ *Compiling ' \
    cargo install boringtun-cli --version "$BORINGTUN_VERSION" --locked
fi
phase "boringtun-cli ok"

if ((QUICK == 0)); then
  if ! command -v bpf-linker >/dev/null; then
    echo "setup: building bpf-linker $BPF_LINKER_VERSION against Debian's LLVM 22 (about a minute)"
    PATH="/usr/lib/llvm-22/bin:$PATH" heartbeat "bpf-linker" "$build_log" '^ *Compiling ' \
      cargo install bpf-linker --version "$BPF_LINKER_VERSION" \
      --locked --no-default-features --features llvm-22
  fi
  phase "bpf-linker ok"
fi

echo "setup: done in $((SECONDS - setup_start)) s"
echo "setup: the Go control plane (for --control-plane kube and the API-server tests) is built on"
echo "       first use, ~10 min once: controlplane/build.sh (netns-lab and scripts/test.sh run it)"
