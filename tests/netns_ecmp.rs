//! A node with an ECMP route across two gateway namespaces; killing one gateway's probe
//! responder removes it from the route within `multiplier × interval`, restoring it brings it
//! back after the hold-down. Everything runs through the real agent pieces: the prober and
//! responder UDP shells, the pure probe table, the reconcile loop and the netlink dataplane.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns::{Netns, require_root, veth};
use netns_nodes::{mesh_plan, route};
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, watch};
use unbounded_net::core::dataplane::{Encap, HEALTH_PROBE_PORT, ProbeTarget};
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::probe::ProbeTable;
use unbounded_net::node::probe::socket::{ProbeCounters, run_prober, run_responder};
use unbounded_net::node::{Reconciler, agent};

const INTERVAL: Duration = Duration::from_millis(100);
const MULTIPLIER: u32 = 3;

async fn dataplane(ns: &Netns, pod_cidr: &str) -> NetlinkDataplane {
    let mut dp = ns.enter(|| {
        NetlinkDataplane::enable_forwarding().unwrap();
        NetlinkDataplane::connect().unwrap()
    });
    dp.ensure_pod_bridge("cbr0", &[pod_cidr.parse().unwrap()])
        .await
        .unwrap();
    dp
}

fn responder(ns: &Netns, addr: &str) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let sock =
        ns.enter(|| std::net::UdpSocket::bind(format!("{addr}:{HEALTH_PROBE_PORT}")).unwrap());
    sock.set_nonblocking(true).unwrap();
    let sock = UdpSocket::from_std(sock).unwrap();
    tokio::spawn(run_responder(sock, Arc::new(ProbeCounters::default())))
}

/// Nexthop devices of the ECMP route, as the kernel shows them.
fn ecmp_devices(ns: &Netns) -> Vec<String> {
    let out = ns.sh("ip route show 10.250.0.0/16 proto 85");
    let mut devs: Vec<String> = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "dev")
        .map(|w| w[1].to_string())
        .collect();
    devs.sort();
    devs.dedup();
    devs
}

async fn wait_for(ns: &Netns, want: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    while ecmp_devices(ns).len() != want {
        assert!(
            start.elapsed() < limit,
            "route did not reach {want} nexthops within {limit:?}: {:?}",
            ecmp_devices(ns)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_gateway_leaves_ecmp_and_returns_after_hold_down() {
    if !require_root("unhealthy_gateway_leaves_ecmp_and_returns_after_hold_down") {
        return;
    }
    let n = Netns::new("en");
    let g1 = Netns::new("eg1");
    let g2 = Netns::new("eg2");
    veth(
        &n,
        "eth1",
        "192.168.61.1/24",
        &g1,
        "eth0",
        "192.168.61.2/24",
    );
    veth(
        &n,
        "eth2",
        "192.168.62.1/24",
        &g2,
        "eth0",
        "192.168.62.2/24",
    );

    // Gateways: a tunnel back to the node, the remote prefix on their loopback.
    for (g, local, cidr) in [
        (&g1, "192.168.61.2", "10.244.11.0/24"),
        (&g2, "192.168.62.2", "10.244.12.0/24"),
    ] {
        let remote = if local.starts_with("192.168.61") {
            "192.168.61.1"
        } else {
            "192.168.62.1"
        };
        let plan = mesh_plan(
            "gw",
            Encap::Vxlan,
            1400,
            &[("n", local, remote, "10.244.10.0/24")],
        );
        let mut r = Reconciler::new(dataplane(g, cidr).await, "unwgunused");
        let rep = r.reconcile(&plan, &BTreeSet::new()).await.unwrap();
        assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
        g.sh("ip addr add 10.250.0.1/32 dev lo");
    }

    // The node: tunnels to both gateways, an ECMP route across them, probes to both.
    let mut plan = mesh_plan(
        "n",
        Encap::Vxlan,
        1400,
        &[
            ("g1", "192.168.61.1", "192.168.61.2", "10.244.11.0/24"),
            ("g2", "192.168.62.1", "192.168.62.2", "10.244.12.0/24"),
        ],
    );
    plan.routes.insert(
        "10.250.0.0/16".parse().unwrap(),
        route(
            Encap::Vxlan,
            &[("g1", "192.168.61.2"), ("g2", "192.168.62.2")],
            1400,
        ),
    );
    for (g, addr) in [("g1", "10.244.11.1"), ("g2", "10.244.12.1")] {
        plan.probes.insert(
            g.to_string(),
            ProbeTarget {
                address: SocketAddr::new(addr.parse().unwrap(), HEALTH_PROBE_PORT),
                enabled: true,
                transmit_interval: INTERVAL,
                receive_interval: INTERVAL,
                multiplier: MULTIPLIER,
            },
        );
    }
    let dp = dataplane(&n, "10.244.10.0/24").await;
    let origin = Instant::now();
    let table = Arc::new(Mutex::new(ProbeTable::default()));
    table.lock().await.sync(&plan.probes, origin.elapsed());
    let (plan_tx, plan_rx) = watch::channel(Some(plan.clone()));
    let (health_tx, health_rx) = watch::channel(BTreeSet::new());
    let passes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let passes_seen = passes.clone();
    let loop_task = tokio::spawn(agent::run_reconcile_loop(
        Reconciler::new(dp, "unwgunused"),
        plan_rx,
        health_rx,
        move |rep, _| passes_seen.lock().unwrap().push(rep.ops.len()),
    ));
    // Replies must return through the tunnels: probe from the node's overlay address.
    let probe_sock = n.enter(|| std::net::UdpSocket::bind("10.244.10.1:0").unwrap());
    probe_sock.set_nonblocking(true).unwrap();
    let counters = Arc::new(ProbeCounters::default());
    let rtts = Arc::new(std::sync::Mutex::new(BTreeMap::<String, Duration>::new()));
    let rtts_seen = rtts.clone();
    let prober = tokio::spawn(run_prober(
        UdpSocket::from_std(probe_sock).unwrap(),
        table.clone(),
        origin,
        health_tx,
        counters.clone(),
        move |peer, rtt| {
            rtts_seen.lock().unwrap().insert(peer.to_string(), rtt);
        },
    ));
    let r1 = responder(&g1, "10.244.11.1");
    let _r2 = responder(&g2, "10.244.12.1");

    wait_for(&n, 2, Duration::from_secs(3)).await;
    n.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.10.1 10.250.0.1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ecmp_devices(&n).len(), 2, "both gateways healthy");
    assert!(table.lock().await.unhealthy().is_empty());
    assert_eq!(
        rtts.lock().unwrap().len(),
        2,
        "RTT measured for both gateways"
    );
    let g2_dev = unbounded_net::node::render::tunnel_name(
        unbounded_net::node::kernel::TunnelKind::Vxlan {
            vni: unbounded_net::node::render::link_vni(
                "192.168.62.1".parse().unwrap(),
                "192.168.62.2".parse().unwrap(),
            ),
        },
        "g2",
    );

    // Kill g1's responder: it must leave the route within the detect window (the last reply
    // came at most one interval before the kill; allow scheduling slack on top).
    r1.abort();
    let detect = INTERVAL * MULTIPLIER;
    let took = wait_for(&n, 1, detect + INTERVAL * 3).await;
    println!(
        "gateway pulled from ECMP {took:?} after its responder died (detect window {detect:?})"
    );
    assert!(took <= detect + INTERVAL * 2, "took {took:?}");
    assert_eq!(ecmp_devices(&n), std::slice::from_ref(&g2_dev));
    n.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.10.1 10.250.0.1");

    // Restore it: back only after the hold-down (default = detect window).
    let _r1 = responder(&g1, "10.244.11.1");
    let took = wait_for(&n, 2, Duration::from_secs(5)).await;
    println!("gateway back in ECMP {took:?} after its responder returned (hold-down {detect:?})");
    assert!(took >= detect, "returned before the hold-down: {took:?}");
    assert!(took <= detect * 2 + INTERVAL * 3, "took {took:?}");

    let malformed = counters
        .malformed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(malformed, 0);
    prober.abort();
    drop(plan_tx);
    let _ = loop_task.await;
    assert!(
        passes.lock().unwrap().len() >= 3,
        "initial pass + two health changes"
    );
}
