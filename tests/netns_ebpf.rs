//! The eBPF dataplane in real namespaces: a node and two gateways, every one running the TC
//! program (own private bpffs for its pins). Checks VXLAN both ways, ECMP spread and flow
//! stickiness, health flips moving only the unhealthy gateway's flows, an IPv6 overlay
//! prefix, an unencapsulated (gateway) route, a WireGuard nexthop (redirect to the device),
//! a deleted map entry breaking exactly its prefix, the counters, and an agent restart that
//! drops nothing.
//!
//! aya and rtnetlink talk to the namespace of the calling thread, so every dataplane call
//! runs inside [`Netns::enter`] on a blocked tokio worker ([`in_ns`]); the netlink
//! connection task runs on the other worker.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use netns::{Netns, report_skip, require_root, veth};
use netns_nodes::{mesh_plan, route};
use unbounded_net::core::dataplane::{Encap, NodeDataplane, WireGuardPeer};
use unbounded_net::node::ebpf::{EbpfConfig, EbpfDataplane};
use unbounded_net::node::{KernelOp, Reconciler};
use unbounded_net_common::flags;

/// A private BPF filesystem for one test's pins; unmounted and removed on drop.
struct BpfFs(PathBuf);

impl BpfFs {
    fn new(tag: &str) -> BpfFs {
        let path = PathBuf::from(format!("/run/unet-bpf-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount bpffs at {}", path.display());
        BpfFs(path)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn in_ns<T>(ns: &Netns, f: impl std::future::Future<Output = T>) -> T {
    ns.enter(|| futures::executor::block_on(f))
}

fn connect(ns: &Netns, fs: &BpfFs) -> Reconciler<EbpfDataplane> {
    let cfg = EbpfConfig {
        pin_dir: fs.0.join(&ns.name),
        wireguard_device: "unwgunused".into(),
    };
    let dp = in_ns(ns, EbpfDataplane::connect(&cfg)).expect("load the eBPF dataplane");
    Reconciler::new(dp, "unwgunused")
}

fn reconcile(
    ns: &Netns,
    r: &mut Reconciler<EbpfDataplane>,
    plan: &NodeDataplane,
    down: &[&str],
) -> Vec<KernelOp> {
    let down: BTreeSet<String> = down.iter().map(|s| s.to_string()).collect();
    let rep = in_ns(ns, r.reconcile(plan, &down)).unwrap();
    assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
    rep.ops
}

/// Sends one datagram per source port from the node to 10.250.0.1:7000 and returns which
/// gateway received each port.
fn spray(
    n: &Netns,
    gws: &[(&str, &UdpSocket)],
    ports: std::ops::Range<u16>,
) -> BTreeMap<u16, String> {
    for port in ports.clone() {
        let s = n.enter(|| UdpSocket::bind(("10.244.70.1", port)).unwrap());
        s.send_to(&port.to_be_bytes(), "10.250.0.1:7000").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = BTreeMap::new();
    let mut buf = [0u8; 16];
    for (name, sock) in gws {
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            let prev = seen.insert(from.port(), name.to_string());
            assert!(prev.is_none(), "port {} reached two gateways", from.port());
        }
    }
    assert_eq!(seen.len(), ports.len(), "every flow arrives exactly once");
    seen
}

/// Sends exactly one UDP datagram from the node's pod address (a dropped one fails `send_to`
/// with ENOBUFS, which is ignored: the counters say what happened).
fn one_datagram(n: &Netns, to: &str) {
    let s = n.enter(|| UdpSocket::bind("10.244.70.1:0").unwrap());
    let _ = s.send_to(b"x", (to, 9));
}

/// Attaches to an existing TUN device (`TUNSETIFF`, no packet-info header), so packets
/// handed to it can be read.
fn attach_tun(name: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    // IFF_TUN | IFF_NO_PI
    ifr[16..18].copy_from_slice(&(0x0001u16 | 0x1000).to_ne_bytes());
    // Safety: TUNSETIFF reads and writes a struct ifreq, which `ifr` is large enough for.
    let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), 0x400454ca, ifr.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    f
}

/// The next packet from an attached TUN (waits up to 2 s).
fn read_packet(tun: &std::fs::File) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // Safety: fcntl on a file descriptor this function borrows.
    unsafe {
        let fl = nix::libc::fcntl(tun.as_raw_fd(), nix::libc::F_GETFL);
        nix::libc::fcntl(
            tun.as_raw_fd(),
            nix::libc::F_SETFL,
            fl | nix::libc::O_NONBLOCK,
        );
    }
    let mut buf = vec![0u8; 2048];
    for _ in 0..200 {
        match (&*tun).read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return buf;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read the TUN device: {e}"),
        }
    }
    panic!("no packet reached the device within 2 s");
}

fn ping(n: &Netns, from: &str, to: &str) -> bool {
    n.try_sh(&format!("ping -c 1 -W 1 -I {from} {to}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_vxlan_ecmp_health_ipv6_map_delete_and_restart() {
    let test = "ebpf_vxlan_ecmp_health_ipv6_map_delete_and_restart";
    if !require_root(test) {
        return;
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        report_skip(&format!(
            "{test}: kernel without BTF cannot run the eBPF dataplane"
        ));
        return;
    }
    let fs = BpfFs::new("vx");
    let n = Netns::new("bn");
    let g1 = Netns::new("bg1");
    let g2 = Netns::new("bg2");
    veth(
        &n,
        "eth1",
        "192.168.71.1/24",
        &g1,
        "eth0",
        "192.168.71.2/24",
    );
    veth(
        &n,
        "eth2",
        "192.168.72.1/24",
        &g2,
        "eth0",
        "192.168.72.2/24",
    );
    n.sh("ip addr add 10.244.70.1/32 dev lo && ip addr add fd00:70::1/128 dev lo");

    let mut gw = Vec::new();
    for (g, local, remote, pod) in [
        (&g1, "192.168.71.2", "192.168.71.1", "10.244.71.1"),
        (&g2, "192.168.72.2", "192.168.72.1", "10.244.72.1"),
    ] {
        g.sh(&format!(
            "ip addr add {pod}/32 dev lo && ip addr add 10.250.0.1/32 dev lo && \
             ip addr add fd00:250::1/128 dev lo"
        ));
        let mut plan = mesh_plan(
            "gw",
            Encap::Vxlan,
            1400,
            &[("n", local, remote, "10.244.70.0/24")],
        );
        plan.routes.insert(
            "fd00:70::/64".parse().unwrap(),
            route(Encap::Vxlan, &[("n", remote)], 1400),
        );
        let mut r = connect(g, &fs);
        reconcile(g, &mut r, &plan, &[]);
        gw.push(r);
    }

    let mut plan = mesh_plan(
        "n",
        Encap::Vxlan,
        1400,
        &[
            ("g1", "192.168.71.1", "192.168.71.2", "10.244.71.0/24"),
            ("g2", "192.168.72.1", "192.168.72.2", "10.244.72.0/24"),
        ],
    );
    for prefix in ["10.250.0.0/16", "fd00:250::/64"] {
        plan.routes.insert(
            prefix.parse().unwrap(),
            route(
                Encap::Vxlan,
                &[("g1", "192.168.71.2"), ("g2", "192.168.72.2")],
                1400,
            ),
        );
    }
    // A site reached without encapsulation: a plain kernel route via the gateway, no map.
    plan.routes.insert(
        "10.244.99.0/24".parse().unwrap(),
        route(Encap::None, &[("g1", "192.168.71.2")], 1400),
    );
    g1.sh("ip addr add 10.244.99.1/32 dev lo");
    // A WireGuard nexthop: a TUN device stands in for the WireGuard device (userspace
    // WireGuard is a TUN too); the program only has to hand it the packet.
    n.sh("ip tuntap add dev unwgunused mode tun && ip link set unwgunused up");
    plan.wireguard.peers.insert(
        "w1".into(),
        WireGuardPeer {
            public_key: "YBk0Kc9rPz6Yx3dDUqVJtD6rXqv3y9TAfHhmB4yF7Ww=".into(),
            endpoint: None,
            allowed_ips: vec!["10.244.98.0/24".parse().unwrap()],
            persistent_keepalive: None,
        },
    );
    plan.routes.insert(
        "10.244.98.0/24".parse().unwrap(),
        route(Encap::WireGuard, &[("w1", "192.168.71.9")], 1400),
    );
    let mut r = connect(&n, &fs);
    reconcile(&n, &mut r, &plan, &[]);
    let plain = n.sh("ip route show 10.244.99.0/24 proto 0x56");
    assert!(plain.contains("via 192.168.71.2"), "{plain}");
    assert!(
        ping(&n, "10.244.70.1", "10.244.99.1"),
        "unencapsulated route"
    );
    let tun = n.enter(|| attach_tun("unwgunused"));
    let before = r.dataplane().counters().unwrap();
    one_datagram(&n, "10.244.98.1");
    let after = r.dataplane().counters().unwrap();
    assert_eq!(
        after.redirects - before.redirects,
        1,
        "{before:?} -> {after:?}"
    );
    // The device got the bare IP packet (the anchor's MAC header stripped on the way).
    // (The now attached TUN sends its own IPv6 router solicitations: skip those.)
    let packet = loop {
        let p = read_packet(&tun);
        if p[0] >> 4 == 4 {
            break p;
        }
    };
    assert_eq!(&packet[16..20], &[10, 244, 98, 1], "{packet:02x?}");

    // One shared flow-based device, not one per peer; the filter is visible to tc.
    let links = n.sh("ip -d link show vxlan0");
    assert!(links.contains("external"), "{links}");
    let filters = n.sh("tc filter show dev unbounded0 egress");
    assert!(filters.contains("unbounded_egress"), "{filters}");
    assert!(
        !n.sh("ip -o link").contains("unvx"),
        "no per-peer devices in eBPF mode"
    );

    // VXLAN both ways (replies come back through the gateways' programs), IPv4 and IPv6.
    assert!(
        ping(&n, "10.244.70.1", "10.244.71.1"),
        "ping g1 over eBPF+VXLAN"
    );
    assert!(
        ping(&n, "10.244.70.1", "10.244.72.1"),
        "ping g2 over eBPF+VXLAN"
    );
    assert!(ping(&n, "fd00:70::1", "fd00:250::1"), "IPv6 overlay prefix");

    // ECMP: 200 flows spread over both gateways and stay put while both are healthy.
    let socks: Vec<UdpSocket> = [&g1, &g2]
        .iter()
        .map(|g| {
            let s = g.enter(|| UdpSocket::bind("10.250.0.1:7000").unwrap());
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let gws = [("g1", &socks[0]), ("g2", &socks[1])];
    let first = spray(&n, &gws, 40000..40200);
    let on_g1 = first.values().filter(|g| *g == "g1").count();
    println!("ECMP: {on_g1} of 200 flows on g1, {} on g2", 200 - on_g1);
    assert!(on_g1 > 0 && on_g1 < 200, "both gateways receive flows");
    assert_eq!(
        spray(&n, &gws, 40000..40200),
        first,
        "no flow changed gateway"
    );

    // g1 unhealthy: one in-place value update per ECMP prefix, and only g1's flows move.
    let ops = reconcile(&n, &mut r, &plan, &["g1"]);
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(
        ops.iter()
            .all(|o| matches!(o, KernelOp::ReplaceRoute { .. }))
    );
    let moved = spray(&n, &gws, 40000..40200);
    for (port, was) in &first {
        assert_eq!(moved[port], "g2", "port {port} (was on {was})");
    }
    // Healthy again: every flow is back where it was.
    reconcile(&n, &mut r, &plan, &[]);
    assert_eq!(
        spray(&n, &gws, 40000..40200),
        first,
        "flows return to their gateway"
    );

    // Deleting one map entry breaks exactly that prefix, and the miss counter says why.
    let before = r.dataplane().counters().unwrap();
    let g2_pods = "10.244.72.0/24".parse().unwrap();
    r.dataplane_mut().maps_mut().remove(g2_pods).unwrap();
    assert!(
        !ping(&n, "10.244.70.1", "10.244.72.1"),
        "deleted prefix is broken"
    );
    assert!(
        ping(&n, "10.244.70.1", "10.244.71.1"),
        "other prefixes still work"
    );
    let after = r.dataplane().counters().unwrap();
    assert!(after.misses > before.misses, "{before:?} -> {after:?}");
    // Exactly one datagram, exactly one miss (multicast chatter is counted as passed).
    one_datagram(&n, "10.244.72.1");
    let last = r.dataplane().counters().unwrap();
    assert_eq!(last.misses - after.misses, 1, "{after:?} -> {last:?}");
    assert!(
        after.redirects > before.redirects,
        "{before:?} -> {after:?}"
    );
    // The next full pass re-reads the kernel and restores it.
    r.invalidate();
    reconcile(&n, &mut r, &plan, &[]);
    assert!(ping(&n, "10.244.70.1", "10.244.72.1"), "prefix restored");

    // No healthy nexthop (only reachable by hand: the planner fails open): drop + count.
    let maps = r.dataplane_mut().maps_mut();
    let mut e = maps.get(g2_pods).unwrap().unwrap();
    e.nexthops[0].flags &= !flags::HEALTHY;
    maps.insert(g2_pods, &e).unwrap();
    let before = r.dataplane().counters().unwrap();
    one_datagram(&n, "10.244.72.1");
    let after = r.dataplane().counters().unwrap();
    assert_eq!(
        after.no_healthy - before.no_healthy,
        1,
        "{before:?} -> {after:?}"
    );
    r.invalidate();
    reconcile(&n, &mut r, &plan, &[]);

    // Restart under load: a new agent re-uses the pinned maps, swaps the program in place,
    // and its first pass writes nothing to the maps. Not one ping may be lost.
    let pinger = {
        let name = n.name.clone();
        std::thread::spawn(move || {
            Command::new("ip")
                .args([
                    "netns", "exec", &name, "ping", "-q", "-i", "0.01", "-c", "200",
                ])
                .args(["-I", "10.244.70.1", "10.244.71.1"])
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // An entry without an anchor route (as after a crash between the two writes) is stale.
    let orphan = "10.244.97.0/24".parse().unwrap();
    let e = r.dataplane_mut().maps_mut().get(g2_pods).unwrap().unwrap();
    r.dataplane_mut().maps_mut().insert(orphan, &e).unwrap();
    drop(r);
    let mut r = connect(&n, &fs);
    let ops = reconcile(&n, &mut r, &plan, &[]);
    assert!(
        ops.iter().all(|o| matches!(o, KernelOp::AddTunnel(_))),
        "restart re-applied routes: {ops:?}"
    );
    assert_eq!(r.dataplane_mut().maps_mut().get(orphan).unwrap(), None);
    let out = pinger.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains(" 0% packet loss"), "{text}");
    assert!(
        n.sh("tc filter show dev unbounded0 egress")
            .matches("unbounded_egress")
            .count()
            == 1,
        "exactly one filter after the restart"
    );

    // Cleanup removes the filter, the routes and the pins.
    let errors = in_ns(&n, r.dataplane_mut().remove_all(&fs.0.join(&n.name)));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(n.sh("ip route show proto 0x56").trim().is_empty());
    for g in [&g1, &g2] {
        let mut r = gw.remove(0);
        let errors = in_ns(g, r.dataplane_mut().remove_all(&fs.0.join(&g.name)));
        assert!(errors.is_empty(), "{errors:?}");
    }
}

/// Whether this kernel can create a flow-based device of `kind` (tried in a throwaway
/// namespace).
fn kernel_has(kind: &str) -> bool {
    let probe = Netns::new("bprobe");
    let args = match kind {
        "geneve" => "type geneve external",
        _ => "type ipip external",
    };
    probe.try_sh(&format!("ip link add x0 {args}"))
}

/// Two nodes, each running the program, pinging each other's pod address over `encap`.
fn two_node_ping(encap: Encap, tag: &str) {
    let fs = BpfFs::new(tag);
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    veth(&a, "eth0", "192.168.73.1/24", &b, "eth0", "192.168.73.2/24");
    a.sh("ip addr add 10.244.73.1/32 dev lo");
    b.sh("ip addr add 10.244.74.1/32 dev lo");
    let pa = mesh_plan(
        "a",
        encap,
        1400,
        &[("b", "192.168.73.1", "192.168.73.2", "10.244.74.0/24")],
    );
    let pb = mesh_plan(
        "b",
        encap,
        1400,
        &[("a", "192.168.73.2", "192.168.73.1", "10.244.73.0/24")],
    );
    let mut ra = connect(&a, &fs);
    reconcile(&a, &mut ra, &pa, &[]);
    let mut rb = connect(&b, &fs);
    reconcile(&b, &mut rb, &pb, &[]);
    assert!(ping(&a, "10.244.73.1", "10.244.74.1"), "{encap} over eBPF");
    let c = ra.dataplane().counters().unwrap();
    assert!(c.redirects > 0, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_geneve_and_ipip() {
    let test = "ebpf_geneve_and_ipip";
    if !require_root(test) {
        return;
    }
    let mut ran = 0;
    for (kind, encap, tag) in [
        ("geneve", Encap::Geneve, "bgn"),
        ("ipip", Encap::Ipip, "bip"),
    ] {
        if kernel_has(kind) {
            two_node_ping(encap, tag);
            ran += 1;
        } else {
            report_skip(&format!(
                "{test}: this kernel has no {kind} module, so the {encap} path of the eBPF \
                 dataplane is not exercised here; run `ebpf/vm-test.sh` (Debian cloud kernel \
                 in qemu, which has {kind})"
            ));
        }
    }
    println!("{ran} of 2 encapsulations exercised");
}
