//! The eBPF dataplane in real namespaces: a node and two gateways, every one running the TC
//! program (own private bpffs for its pins). Checks VXLAN both ways, ECMP spread and flow
//! stickiness, health flips moving only the unhealthy gateway's flows, an IPv6 overlay
//! prefix, an unencapsulated (gateway) route, a WireGuard nexthop (redirect to the device),
//! a deleted map entry breaking exactly its prefix, the counters, and an agent restart that
//! drops nothing; a prefix mixing a VXLAN and a plain gateway nexthop; the nexthop limit;
//! a pinned map of an older layout being replaced.
//!
//! aya and rtnetlink talk to the namespace of the calling thread, so every dataplane call
//! runs inside [`Netns::enter`] on a blocked tokio worker ([`in_ns`]); the netlink
//! connection task runs on the other worker.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_ebpf.rs"]
mod netns_ebpf;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use netns::{Netns, report_skip, require_root, veth};
use netns_ebpf::{
    BpfFs, attach_tun, connect, drain_counts, in_ns, one_datagram, pin_old_layout_map, ping,
    read_packet, reconcile, skip_without_btf, spray, spray_from,
};
use netns_nodes::{mesh_plan, route};
use unbounded_net::core::dataplane::{Encap, WireGuardPeer};
use unbounded_net::node::KernelOp;
use unbounded_net_common::flags;

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

/// One prefix over a VXLAN gateway and a plain routed gateway: flows hash onto both, the
/// plain one leaves by its link with the neighbour's MAC (`bpf_redirect_neigh`), and when it
/// is unhealthy only its own flows move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_mixed_gateway_and_vxlan_nexthops() {
    let test = "ebpf_mixed_gateway_and_vxlan_nexthops";
    if !require_root(test) || skip_without_btf(test) {
        return;
    }
    let fs = BpfFs::new("mx");
    let n = Netns::new("mxn");
    let g1 = Netns::new("mxg1");
    let g2 = Netns::new("mxg2");
    veth(
        &n,
        "eth1",
        "192.168.76.1/24",
        &g1,
        "eth0",
        "192.168.76.2/24",
    );
    veth(
        &n,
        "eth2",
        "192.168.77.1/24",
        &g2,
        "eth0",
        "192.168.77.2/24",
    );
    n.sh("ip addr add 10.244.76.1/32 dev lo");
    g1.sh("ip addr add 10.251.0.1/32 dev lo");
    // g2 is a plain router: no dataplane, just the address and a route back.
    g2.sh("ip addr add 10.251.0.1/32 dev lo && ip route add 10.244.76.0/24 via 192.168.77.1");
    let mut r1 = connect(&g1, &fs);
    let p1 = mesh_plan(
        "g1",
        Encap::Vxlan,
        1400,
        &[("n", "192.168.76.2", "192.168.76.1", "10.244.76.0/24")],
    );
    reconcile(&g1, &mut r1, &p1, &[]);

    let mut plan = mesh_plan(
        "n",
        Encap::Vxlan,
        1400,
        &[("g1", "192.168.76.1", "192.168.76.2", "10.244.77.0/24")],
    );
    let mut mixed = route(Encap::Vxlan, &[("g1", "192.168.76.2")], 1400);
    mixed
        .nexthops
        .extend(route(Encap::None, &[("g2", "192.168.77.2")], 1400).nexthops);
    let prefix = "10.251.0.0/16".parse().unwrap();
    plan.routes.insert(prefix, mixed);
    let mut r = connect(&n, &fs);
    reconcile(&n, &mut r, &plan, &[]);

    let e = r.dataplane_mut().maps_mut().get(prefix).unwrap().unwrap();
    assert_eq!(e.count, 2, "{e:?}");
    let eth2: u32 = n
        .sh("cat /sys/class/net/eth2/ifindex")
        .trim()
        .parse()
        .unwrap();
    let gw = e.nexthops[..2]
        .iter()
        .find(|s| s.protocol == unbounded_net_common::proto::GATEWAY)
        .expect("a gateway slot");
    assert_eq!(
        (gw.ifindex, &gw.underlay[..4]),
        (eth2, &[192, 168, 77, 2][..])
    );

    let socks: Vec<UdpSocket> = [&g1, &g2]
        .iter()
        .map(|g| {
            let s = g.enter(|| UdpSocket::bind("10.251.0.1:7000").unwrap());
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let gws = [("g1", &socks[0]), ("g2", &socks[1])];
    let flows = |r: std::ops::Range<u16>| spray_from(&n, "10.244.76.1", "10.251.0.1:7000", &gws, r);
    let first = flows(41000..41200);
    let on_g2 = first.values().filter(|g| *g == "g2").count();
    println!("mixed: {on_g2} of 200 flows on the plain gateway");
    assert!(
        on_g2 > 40 && on_g2 < 160,
        "both nexthops carry flows: {on_g2}"
    );
    assert_eq!(flows(41000..41200), first, "no flow changed nexthop");

    // The plain gateway unhealthy: one value rewritten in place, only its flows move.
    let ops = reconcile(&n, &mut r, &plan, &["g2"]);
    assert_eq!(ops.len(), 1, "{ops:?}");
    let moved = flows(41000..41200);
    for (port, was) in &first {
        assert_eq!(moved[port], "g1", "port {port} (was on {was})");
    }
    reconcile(&n, &mut r, &plan, &[]);
    assert_eq!(flows(41000..41200), first, "flows return to their nexthop");

    // The tunnel unhealthy: the prefix becomes a plain kernel route via the gateway.
    reconcile(&n, &mut r, &plan, &["g1"]);
    let plain = n.sh("ip route show 10.251.0.0/16 proto 0x56");
    assert!(plain.contains("via 192.168.77.2"), "{plain}");
    assert!(flows(41000..41200).values().all(|g| g == "g2"));
    assert_eq!(r.dataplane_mut().maps_mut().get(prefix).unwrap(), None);
    reconcile(&n, &mut r, &plan, &[]);
    assert_eq!(
        flows(41000..41200),
        first,
        "flows return after the tunnel recovers"
    );

    let c = r.dataplane().counters().unwrap();
    assert_eq!((c.errors, c.no_healthy), (0, 0), "{c:?}");
    for (ns, rr) in [(&n, &mut r), (&g1, &mut r1)] {
        let errors = in_ns(ns, rr.dataplane_mut().remove_all(&fs.0.join(&ns.name)));
        assert!(errors.is_empty(), "{errors:?}");
    }
}

/// The full nexthop limit (`MAX_NEXTHOPS` = 16) loads, and every slot carries flows; one
/// more is an apply failure naming the prefix and the counts, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_sixteen_nexthops_and_seventeen_refused() {
    let test = "ebpf_sixteen_nexthops_and_seventeen_refused";
    if !require_root(test) || skip_without_btf(test) {
        return;
    }
    const MAX: usize = unbounded_net_common::MAX_NEXTHOPS;
    let fs = BpfFs::new("nh");
    let n = Netns::new("nhn");
    let p = Netns::new("nhp");
    veth(&n, "eth1", "192.168.78.1/24", &p, "eth0", "192.168.78.2/24");
    n.sh("ip addr add 10.244.78.1/32 dev lo");
    let remotes: Vec<String> = (0..=MAX).map(|i| format!("192.168.78.{}", 2 + i)).collect();
    // No VXLAN device on the far side: a plain UDP socket on each underlay address and the
    // VXLAN port receives the encapsulated datagrams, so each counts one slot's flows.
    for a in &remotes[1..] {
        p.sh(&format!("ip addr add {a}/32 dev eth0"));
    }
    let outer: Vec<UdpSocket> = remotes
        .iter()
        .map(|a| {
            let s = p.enter(|| UdpSocket::bind((a.as_str(), 4789)).unwrap());
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let peers: Vec<(String, String, String)> = remotes
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("t{i}"), a.clone(), format!("10.246.{i}.0/24")))
        .collect();
    let peer_refs: Vec<(&str, &str, &str, &str)> = peers
        .iter()
        .map(|(n, a, c)| (n.as_str(), "192.168.78.1", a.as_str(), c.as_str()))
        .collect();
    let mut plan = mesh_plan("n", Encap::Vxlan, 1400, &peer_refs);
    let via = |k: usize| {
        let hops: Vec<(&str, &str)> = peers[..k]
            .iter()
            .map(|(n, a, _)| (n.as_str(), a.as_str()))
            .collect();
        route(Encap::Vxlan, &hops, 1400)
    };
    let wide = "10.252.0.0/16".parse().unwrap();
    plan.routes.insert(wide, via(MAX));
    let mut r = connect(&n, &fs);
    reconcile(&n, &mut r, &plan, &[]);
    let full = r.dataplane_mut().maps_mut().get(wide).unwrap().unwrap();
    assert_eq!(full.count as usize, MAX);

    for port in 42000..42400u16 {
        let s = n.enter(|| UdpSocket::bind(("10.244.78.1", port)).unwrap());
        s.send_to(b"x", "10.252.0.1:7000").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let counts = drain_counts(&outer);
    println!("flows per slot: {counts:?}");
    assert!(
        counts[..MAX].iter().all(|c| *c > 0),
        "a slot carried nothing: {counts:?}"
    );
    assert_eq!(counts[MAX], 0, "the 17th underlay is in no route yet");
    assert_eq!(
        counts.iter().sum::<usize>(),
        400,
        "every flow arrives exactly once"
    );

    // One more nexthop: refused, the prefix keeps its previous value and route.
    let mut over = plan.clone();
    over.routes.insert(wide, via(MAX + 1));
    let fresh = "10.253.0.0/16".parse().unwrap();
    over.routes.insert(fresh, via(MAX + 1));
    let rep = in_ns(&n, r.reconcile(&over, &BTreeSet::new())).unwrap();
    assert_eq!(rep.apply.failures.len(), 2, "{:?}", rep.apply.failures);
    for prefix in ["10.252.0.0/16", "10.253.0.0/16"] {
        let f = rep
            .apply
            .failures
            .iter()
            .find(|f| f.message.contains(prefix));
        let m = &f
            .unwrap_or_else(|| panic!("no failure names {prefix}"))
            .message;
        assert!(m.contains(&format!("{} nexthops", MAX + 1)), "{m}");
        assert!(m.contains(&format!("at most {MAX}")), "{m}");
    }
    assert_eq!(r.dataplane_mut().maps_mut().get(wide).unwrap(), Some(full));
    assert_eq!(r.dataplane_mut().maps_mut().get(fresh).unwrap(), None);
    assert!(
        n.sh("ip route show 10.253.0.0/16 proto 0x56")
            .trim()
            .is_empty()
    );
    assert!(
        !n.sh("ip route show 10.252.0.0/16 proto 0x56")
            .trim()
            .is_empty()
    );

    let errors = in_ns(&n, r.dataplane_mut().remove_all(&fs.0.join(&n.name)));
    assert!(errors.is_empty(), "{errors:?}");
}

/// A pin left by an agent with another map layout is replaced, not misread: the new agent
/// gets a map of its own layout and the first pass writes every prefix into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ebpf_pinned_map_of_an_older_layout_is_replaced() {
    let test = "ebpf_pinned_map_of_an_older_layout_is_replaced";
    if !require_root(test) || skip_without_btf(test) {
        return;
    }
    let fs = BpfFs::new("pl");
    let a = Netns::new("pla");
    let b = Netns::new("plb");
    veth(&a, "eth0", "192.168.79.1/24", &b, "eth0", "192.168.79.2/24");
    a.sh("ip addr add 10.244.79.1/32 dev lo");
    b.sh("ip addr add 10.244.80.1/32 dev lo");
    let dir = fs.0.join(&a.name);
    std::fs::create_dir_all(&dir).unwrap();
    let pin = dir.join(unbounded_net_common::ROUTES_V4);
    pin_old_layout_map(&pin);
    let pa = mesh_plan(
        "a",
        Encap::Vxlan,
        1400,
        &[("b", "192.168.79.1", "192.168.79.2", "10.244.80.0/24")],
    );
    let pb = mesh_plan(
        "b",
        Encap::Vxlan,
        1400,
        &[("a", "192.168.79.2", "192.168.79.1", "10.244.79.0/24")],
    );
    let mut ra = connect(&a, &fs);
    let info = aya::maps::MapInfo::from_pin(&pin).unwrap();
    assert_eq!(
        info.value_size() as usize,
        std::mem::size_of::<unbounded_net_common::RouteEntry>()
    );
    reconcile(&a, &mut ra, &pa, &[]);
    let mut rb = connect(&b, &fs);
    reconcile(&b, &mut rb, &pb, &[]);
    assert!(
        ping(&a, "10.244.79.1", "10.244.80.1"),
        "traffic over the new map"
    );
    for (ns, r) in [(&a, &mut ra), (&b, &mut rb)] {
        let errors = in_ns(ns, r.dataplane_mut().remove_all(&fs.0.join(&ns.name)));
        assert!(errors.is_empty(), "{errors:?}");
    }
}
