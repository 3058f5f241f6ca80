//! Two "nodes" exchange pod traffic over WireGuard (kernel where present, else userspace
//! boringtun started by the agent) with the peers and routes the plan asked for; keys are
//! generated once with mode 0600; an agent restart changes no link, route or peer.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;
use std::path::PathBuf;

use netns::{Netns, require_root, veth};
use netns_nodes::route;
use unbounded_net::core::dataplane::{Encap, NodeDataplane, WireGuardPeer};
use unbounded_net::node::Reconciler;
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::wireguard::keys::{self, PrivateKey};
use unbounded_net::node::wireguard::{PeerSyncReport, WireGuardDevice};
use wireguard_control::Backend;

/// Stops (by PID) the boringtun daemons this test's agents started and removes the state
/// directories, even when the test fails.
struct Cleanup {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

struct Node {
    ns: Netns,
    wg_name: String,
    key: PrivateKey,
    pod_cidr: &'static str,
    underlay: &'static str,
}

/// One full agent pass for `node` inside its namespace: dataplane, WireGuard device, peers,
/// routes. Returns what WireGuard and the reconciler did.
fn agent_pass(
    node: &Node,
    plan: &NodeDataplane,
    cleanup: &mut Cleanup,
) -> (Backend, PeerSyncReport, usize) {
    node.ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            NetlinkDataplane::enable_forwarding().unwrap();
            let mut dp = NetlinkDataplane::connect().unwrap();
            dp.ensure_pod_bridge("cbr0", &[node.pod_cidr.parse().unwrap()])
                .await
                .unwrap();
            let wg = WireGuardDevice::ensure(dp.handle(), &node.wg_name, false)
                .await
                .unwrap();
            cleanup.pids.extend(wg.started_daemon);
            let report = wg
                .configure(&node.key, plan.wireguard.listen_port, &plan.wireguard.peers)
                .unwrap();
            let mut r = Reconciler::new(dp, node.wg_name.clone());
            let rep = r.reconcile(plan, &BTreeSet::new()).await.unwrap();
            assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
            (wg.backend, report, rep.ops.len())
        })
    })
}

fn plan_for(me: &Node, peer_name: &str, peer: &Node, keepalive: Option<u16>) -> NodeDataplane {
    let mut plan = NodeDataplane {
        node: me.ns.name.clone(),
        ..Default::default()
    };
    plan.wireguard.peers.insert(
        peer_name.to_string(),
        WireGuardPeer {
            public_key: peer.key.public_base64(),
            endpoint: Some(format!("{}:51820", peer.underlay).parse().unwrap()),
            allowed_ips: vec![peer.pod_cidr.parse().unwrap()],
            persistent_keepalive: keepalive,
        },
    );
    plan.routes.insert(
        peer.pod_cidr.parse().unwrap(),
        route(Encap::WireGuard, &[(peer_name, peer.underlay)], 1380),
    );
    plan
}

fn dump(node: &Node) -> String {
    node.ns.sh(&format!(
        "ip -o link show; ip route show table all; wg show {} dump | cut -f1-4",
        node.wg_name
    ))
}

#[test]
fn wireguard_pod_traffic_keys_and_restart() {
    if !require_root("wireguard_pod_traffic_keys_and_restart") {
        return;
    }
    let pid = std::process::id() % 1_000_000;
    let mut cleanup = Cleanup {
        pids: vec![],
        dirs: vec![],
    };
    let mut make = |tag: &str, pod_cidr, underlay| {
        let dir = std::env::temp_dir().join(format!("unet-wg-{tag}-{pid}"));
        cleanup.dirs.push(dir.clone());
        let (key, created) = keys::load_or_create(&dir).unwrap();
        assert!(created);
        Node {
            ns: Netns::new(&format!("wg{tag}")),
            // boringtun's socket directory is machine-wide: names must be unique.
            wg_name: format!("unwg{pid}{tag}"),
            key,
            pod_cidr,
            underlay,
        }
    };
    let a = make("a", "10.244.1.0/24", "192.168.51.1");
    let b = make("b", "10.244.2.0/24", "192.168.51.2");
    veth(
        &a.ns,
        "eth0",
        "192.168.51.1/24",
        &b.ns,
        "eth0",
        "192.168.51.2/24",
    );

    // A pretends B is behind NAT and keeps the mapping open.
    let plan_a = plan_for(&a, "b", &b, Some(25));
    let plan_b = plan_for(&b, "a", &a, None);
    let (backend, rep_a, ops_a) = agent_pass(&a, &plan_a, &mut cleanup);
    let (_, rep_b, _) = agent_pass(&b, &plan_b, &mut cleanup);
    println!("WireGuard backend chosen: {backend}");
    assert!(rep_a.identity_set && rep_b.identity_set);
    assert_eq!(rep_a.added, ["b"]);
    assert_eq!(ops_a, 1, "one route through the WireGuard device");

    let routes = a.ns.sh("ip route show proto 85");
    assert!(
        routes.contains(&format!("10.244.2.0/24 dev {} ", a.wg_name))
            && routes.contains("mtu 1380"),
        "{routes}"
    );
    let peers = a.ns.sh(&format!("wg show {} dump", a.wg_name));
    assert!(peers.contains(&b.key.public_base64()), "{peers}");
    assert!(
        peers.contains("10.244.2.0/24") && peers.contains("192.168.51.2:51820"),
        "{peers}"
    );
    assert!(
        a.ns.sh(&format!("wg show {} persistent-keepalive", a.wg_name))
            .contains("25")
    );

    a.ns.sh("ping -c 3 -i 0.3 -W 3 -I 10.244.1.1 10.244.2.1");
    // The ping was encrypted: the peer's transfer counters moved.
    let transfer = a.ns.sh(&format!("wg show {} transfer", a.wg_name));
    let received: u64 = transfer
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(received > 0, "no WireGuard traffic received: {transfer}");

    // Restart: the key survives, the daemon is adopted, nothing is re-sent or changed.
    let before = dump(&a);
    let (reloaded, created) = keys::load_or_create(&cleanup.dirs[0]).unwrap();
    assert!(!created);
    assert_eq!(reloaded.public_base64(), a.key.public_base64());
    let (_, again, ops) = agent_pass(&a, &plan_a, &mut cleanup);
    assert!(!again.identity_set, "key and port were re-sent");
    assert!(again.added.is_empty() && again.removed == 0, "{again:?}");
    assert_eq!(ops, 0);
    assert_eq!(dump(&a), before);

    // A peer with a garbage key is skipped and named; the good peer stays.
    let mut bad = plan_a.clone();
    bad.wireguard.peers.insert(
        "garbage".into(),
        WireGuardPeer {
            public_key: "xyz".into(),
            endpoint: None,
            allowed_ips: vec![],
            persistent_keepalive: None,
        },
    );
    let (_, rep, _) = agent_pass(&a, &bad, &mut cleanup);
    assert_eq!(rep.skipped.len(), 1);
    assert!(rep.skipped[0].to_string().contains("garbage"));
    assert_eq!(rep.removed, 0);
    a.ns.sh("ping -c 1 -W 3 -I 10.244.1.1 10.244.2.1");
}

#[test]
fn kernel_backend_is_chosen_where_the_kernel_has_wireguard() {
    if !require_root("kernel_backend_is_chosen_where_the_kernel_has_wireguard") {
        return;
    }
    let probe = Netns::new("wgk");
    if !probe.try_sh("ip link add wgprobe0 type wireguard") {
        netns::report_skip(
            "kernel_backend: this kernel has no WireGuard (`ip link add type wireguard` fails); the userspace path is tested instead; run this in the lab's VM mode",
        );
        return;
    }
    probe.sh("ip link del wgprobe0");
    let name = format!("unwg{}k", std::process::id() % 1_000_000);
    let backend = probe.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dp = NetlinkDataplane::connect().unwrap();
            let wg = WireGuardDevice::ensure(dp.handle(), &name, false)
                .await
                .unwrap();
            assert_eq!(wg.started_daemon, None, "no daemon with kernel WireGuard");
            wg.backend
        })
    });
    assert_eq!(backend, Backend::Kernel);
}
