#!/usr/bin/env bash
# One idempotent setup for a fresh Debian 12 machine (root). Fast when everything is present.
#   scripts/setup.sh            everything the test suite and the lab need
#   scripts/setup.sh --quick    skip the slow optional parts (eBPF linker, control-plane binaries)
set -euo pipefail

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
  pkg-config ca-certificates shellcheck
)

phase_start=$(date +%s)
phase() { local now; now=$(date +%s); echo "setup: $1 ($((now - phase_start)) s so far)"; }

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
  echo "setup: building boringtun-cli $BORINGTUN_VERSION (userspace WireGuard; this kernel may lack it)"
  cargo install boringtun-cli --version "$BORINGTUN_VERSION" --locked -q
fi
phase "boringtun-cli ok"

if ((QUICK == 0)); then
  if ! command -v bpf-linker >/dev/null; then
    echo "setup: building bpf-linker $BPF_LINKER_VERSION against Debian's LLVM 22 (about a minute)"
    PATH="/usr/lib/llvm-22/bin:$PATH" cargo install bpf-linker --version "$BPF_LINKER_VERSION" \
      --locked --no-default-features --features llvm-22 -q
  fi
  phase "bpf-linker ok"
fi

# Control plane for the API-server tests (issue 4): kube-apiserver, kubectl and etcd built from
# pinned Go modules; cached under /var/cache/unbounded-net/controlplane/<version>/ (≈10 min the
# first time on 2 cores, instant afterwards). Needs Go (/usr/local/go/bin/go) and openssl.
if ((QUICK == 0)); then
  command -v openssl >/dev/null || apt-get install -y -qq --no-install-recommends openssl >/dev/null
  "$(dirname "${BASH_SOURCE[0]}")/../controlplane/build.sh" >/dev/null
  phase "control-plane binaries ok (build.sh printed its build time above)"
fi

phase "done"
