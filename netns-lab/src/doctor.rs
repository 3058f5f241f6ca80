//! `netns-lab doctor`: what this kernel and machine can do for the lab, and for each missing
//! piece the exact command that provides it.
//!
//! Kernel features are probed for real (a link of each type is created in a throw-away
//! namespace), never guessed from the kernel version.

use std::path::Path;

use serde::Serialize;

use crate::cmd;

/// One capability and whether this machine has it.
#[derive(Clone, Debug, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub kind: &'static str,
    pub present: bool,
    /// What was seen (error text when absent).
    pub detail: String,
    /// The command that provides it, when it is missing.
    pub fix: Option<String>,
}

/// Which kernel a lab needs a feature from.
const KERNEL_VM_HINT: &str = "this kernel lacks it and has no loadable modules: run the scenario with `--kernel vm` (qemu TCG with Debian's cloud kernel)";

fn apt(pkg: &str) -> String {
    format!("apt-get install -y --no-install-recommends {pkg}   (or scripts/setup.sh)")
}

/// Kernel link types the lab may use, with the `ip link add … type` arguments that make one.
const LINK_TYPES: &[(&str, &str)] = &[
    ("veth", "type veth peer name dr-peer"),
    ("bridge", "type bridge"),
    ("vxlan", "type vxlan id 1 dstport 4789 local 192.0.2.1"),
    ("geneve", "type geneve id 1 remote 192.0.2.2"),
    ("ipip", "type ipip local 192.0.2.1 remote 192.0.2.2"),
    ("wireguard", "type wireguard"),
    ("dummy", "type dummy"),
];

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Probes every link type inside one scratch namespace, removed again afterwards.
fn probe_link_types() -> Vec<Capability> {
    let ns = format!("nlab-doctor-{}", std::process::id());
    if let Err(e) = cmd::run("ip", &["netns", "add", &ns]) {
        return vec![Capability {
            name: "netns",
            kind: "kernel",
            present: false,
            detail: e.to_string(),
            fix: Some("run as root on a kernel with network namespaces".into()),
        }];
    }
    let mut caps = vec![Capability {
        name: "netns",
        kind: "kernel",
        present: true,
        detail: "ip netns add works".into(),
        fix: None,
    }];
    for (name, args) in LINK_TYPES {
        let line = format!("link add dr-{name} {args}");
        let res = cmd::ip_batch(&ns, &[line]);
        caps.push(Capability {
            name,
            kind: "kernel",
            present: res.is_ok(),
            detail: match &res {
                Ok(()) => "created a link of this type".into(),
                Err(e) => first_line(&e.to_string()),
            },
            fix: res.is_err().then(|| KERNEL_VM_HINT.to_string()),
        });
    }
    let tun = cmd::ip_batch(&ns, &["tuntap add dev dr-tun mode tun".into()]);
    caps.push(Capability {
        name: "tun",
        kind: "kernel",
        present: tun.is_ok() && Path::new("/dev/net/tun").exists(),
        detail: match &tun {
            Ok(()) => "/dev/net/tun and a tun link".into(),
            Err(e) => e.to_string(),
        },
        fix: tun
            .is_err()
            .then(|| "mknod /dev/net/tun c 10 200 (needs CONFIG_TUN)".into()),
    });
    let netem =
        cmd::ip_batch(&ns, &["link add dr-nq type veth peer name dr-nq2".into()]).and_then(|()| {
            cmd::in_netns(
                &ns,
                "tc",
                &[
                    "qdisc", "add", "dev", "dr-nq", "root", "netem", "delay", "1ms",
                ],
            )
            .map(|_| ())
        });
    caps.push(Capability {
        name: "netem",
        kind: "kernel",
        present: netem.is_ok(),
        detail: match &netem {
            Ok(()) => "tc qdisc netem works".into(),
            Err(e) => first_line(&e.to_string()),
        },
        fix: netem
            .is_err()
            .then(|| "a kernel with CONFIG_NET_SCH_NETEM (or --kernel vm)".into()),
    });
    let nft = cmd::nft(
        &ns,
        "table ip doctor { chain post { type nat hook postrouting priority 100; masquerade; } }\n",
    );
    caps.push(Capability {
        name: "nftables-nat",
        kind: "kernel",
        present: nft.is_ok(),
        detail: match &nft {
            Ok(()) => "nft masquerade rule loaded".into(),
            Err(e) => e.to_string(),
        },
        fix: nft.is_err().then(|| apt("nftables")),
    });
    if let Err(e) = cmd::run("ip", &["netns", "del", &ns]) {
        eprintln!("doctor: could not remove scratch namespace {ns}: {e}");
    }
    caps
}

/// Tools the lab runs, and the Debian package (or cargo crate) each comes from.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "apt:iproute2"),
    ("tc", "apt:iproute2"),
    ("nft", "apt:nftables"),
    ("iptables", "apt:iptables"),
    ("ping", "apt:iputils-ping"),
    ("tcpdump", "apt:tcpdump"),
    ("iperf3", "apt:iperf3"),
    ("wg", "apt:wireguard-tools"),
    (
        "boringtun-cli",
        "cargo:boringtun-cli --version 0.7.1 --locked",
    ),
    ("qemu-system-x86_64", "apt:qemu-system-x86"),
    ("busybox", "apt:busybox-static"),
];

fn which(tool: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
    // Root's cargo bin is where setup.sh installs boringtun-cli.
    dirs.push("/root/.cargo/bin".into());
    dirs.into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn probe_tools() -> Vec<Capability> {
    let mut caps = Vec::new();
    for (tool, source) in TOOLS {
        let found = which(tool);
        let fix = match source.split_once(':') {
            Some(("apt", pkg)) => apt(pkg),
            Some((_, krate)) => format!("cargo install {krate}   (or scripts/setup.sh)"),
            None => unreachable!(),
        };
        caps.push(Capability {
            name: tool,
            kind: "tool",
            present: found.is_some(),
            detail: found.unwrap_or_else(|| "not on PATH".into()),
            fix: Some(fix).filter(|_| which(tool).is_none()),
        });
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let path = Path::new(crate::pods::CNI_BIN_DIR).join(plugin);
        let present = path.is_file();
        caps.push(Capability {
            name: plugin,
            kind: "cni-plugin",
            present,
            detail: path.display().to_string(),
            fix: (!present).then(|| apt("containernetworking-plugins")),
        });
    }
    caps
}

/// Everything `doctor` checks.
pub fn probe_all() -> Vec<Capability> {
    let mut caps = Vec::new();
    let root = nix::unistd::Uid::effective().is_root();
    caps.push(Capability {
        name: "root",
        kind: "machine",
        present: root,
        detail: if root {
            "running as root".into()
        } else {
            "not root".into()
        },
        fix: (!root).then(|| "run netns-lab as root (sudo)".into()),
    });
    if root {
        caps.extend(probe_link_types());
    }
    caps.extend(probe_tools());
    let vm = probe_vm(&caps);
    caps.extend(vm);
    caps
}

/// `--kernel vm`: the cached cloud kernel, and whether everything the VM needs is here.
fn probe_vm(found: &[Capability]) -> Vec<Capability> {
    const SETUP: &str = "scripts/setup.sh   (downloads linux-image-cloud-amd64's kernel into /var/cache/unbounded-net/vm-kernel/ and installs qemu-system-x86, busybox-static)";
    let kernel = crate::vm::kernel::GuestKernel::find();
    let mut caps = vec![Capability {
        name: "vm-kernel",
        kind: "vm",
        present: kernel.is_ok(),
        detail: match &kernel {
            Ok(k) => format!("{} at {}", k.release, k.root.display()),
            Err(e) => e.to_string(),
        },
        fix: kernel.is_err().then(|| SETUP.to_string()),
    }];
    let tool_ok = |name: &str| found.iter().any(|c| c.name == name && c.present);
    let missing: Vec<&str> = [
        ("the cached cloud kernel", kernel.is_ok()),
        ("qemu-system-x86_64", tool_ok("qemu-system-x86_64")),
        ("busybox", tool_ok("busybox")),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(n, _)| n)
    .collect();
    caps.push(Capability {
        name: "vm-mode",
        kind: "vm",
        present: missing.is_empty(),
        detail: if missing.is_empty() {
            "`netns-lab scenario FILE --kernel vm` boots the cloud kernel under qemu TCG (kernel WireGuard, GENEVE, IPIP, dummy, netem)".into()
        } else {
            format!("--kernel vm unavailable, missing: {}", missing.join(", "))
        },
        fix: (!missing.is_empty()).then(|| SETUP.to_string()),
    });
    caps
}

/// Whether the kernel can create a link of this type (`doctor`'s probe, reused by the lab to
/// refuse scenarios that need a missing kernel feature).
pub fn kernel_has(caps: &[Capability], name: &str) -> bool {
    caps.iter()
        .any(|c| c.kind == "kernel" && c.name == name && c.present)
}

/// Prints the capability table.
pub fn print(caps: &[Capability]) {
    println!(
        "{:<20} {:<11} {:<8} detail / fix",
        "capability", "kind", "status"
    );
    for c in caps {
        let status = if c.present { "ok" } else { "MISSING" };
        let text = match (&c.fix, c.present) {
            (Some(fix), false) => format!("{}\n{:>42}fix: {fix}", c.detail, ""),
            _ => c.detail.clone(),
        };
        println!("{:<20} {:<11} {:<8} {text}", c.name, c.kind, status);
    }
}
