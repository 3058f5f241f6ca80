//! The planner's own output, programmed by the agent: a Site of two nodes with
//! `tunnelProtocol: VXLAN` is planned by `core::plan_node`, each plan is applied in its node's
//! namespace, pod-range traffic flows, and the plan's probe targets answer through the
//! tunnels (so the planner's health address and the agent's responder agree).

#[path = "support/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns::{Netns, require_root, veth};
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, watch};
use unbounded_net::api::TunnelProtocol;
use unbounded_net::core::Snapshot;
use unbounded_net::core::dataplane::{Encap, HEALTH_PROBE_PORT};
use unbounded_net::core::node_plan::{health_address, plan_node};
use unbounded_net::core::plan_index::{PlanIndex, PlanSettings};
use unbounded_net::core::synthetic::{node, site};
use unbounded_net::node::Reconciler;
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::probe::ProbeTable;
use unbounded_net::node::probe::socket::{ProbeCounters, run_prober, run_responder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_output_programs_working_vxlan_and_probes() {
    if !require_root("planner_output_programs_working_vxlan_and_probes") {
        return;
    }
    let mut snap = Snapshot::default();
    let mut s = site("192.168.54.0/24", "10.244.0.0/16");
    s.tunnel_protocol = Some(TunnelProtocol::Vxlan);
    snap.sites.insert("s".into(), s);
    for (n, ip, cidr) in [
        ("n1", "192.168.54.1", "10.244.1.0/24"),
        ("n2", "192.168.54.2", "10.244.2.0/24"),
    ] {
        snap.nodes.insert(n.into(), node(n, "s", ip, None, cidr));
    }
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let p1 = plan_node(&index, "n1").unwrap();
    let p2 = plan_node(&index, "n2").unwrap();
    assert!(p1.problems.is_empty(), "{:?}", p1.problems);
    assert_eq!(p1.dataplane.tunnels["n2"].encap, Encap::Vxlan);

    let a = Netns::new("pla");
    let b = Netns::new("plb");
    veth(&a, "eth0", "192.168.54.1/24", &b, "eth0", "192.168.54.2/24");
    let none = BTreeSet::new();
    let counters = Arc::new(ProbeCounters::default());
    let mut responders = Vec::new();
    for (ns, plan, cidr) in [(&a, &p1, "10.244.1.0/24"), (&b, &p2, "10.244.2.0/24")] {
        let mut dp = ns.enter(|| {
            NetlinkDataplane::enable_forwarding().unwrap();
            NetlinkDataplane::connect().unwrap()
        });
        dp.ensure_pod_bridge("cbr0", &[cidr.parse().unwrap()])
            .await
            .unwrap();
        let rep = Reconciler::new(dp, "unwgunused")
            .reconcile(&plan.dataplane, &none)
            .await
            .unwrap();
        assert!(
            rep.apply.failures.is_empty() && rep.problems.is_empty(),
            "{rep:?}"
        );
        let health = health_address(&[cidr.parse().unwrap()]).unwrap();
        let sock = ns.enter(|| std::net::UdpSocket::bind((health, HEALTH_PROBE_PORT)).unwrap());
        sock.set_nonblocking(true).unwrap();
        responders.push(tokio::spawn(run_responder(
            UdpSocket::from_std(sock).unwrap(),
            counters.clone(),
        )));
    }
    a.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.1.1 10.244.2.1");

    // n1 probes what its plan says to probe; every reply must be accepted.
    assert!(
        !p1.dataplane.probes.is_empty(),
        "the plan asks for no probes"
    );
    let origin = Instant::now();
    let table = Arc::new(Mutex::new(ProbeTable::default()));
    table
        .lock()
        .await
        .sync(&p1.dataplane.probes, origin.elapsed());
    let src = health_address(&["10.244.1.0/24".parse().unwrap()]).unwrap();
    let sock = a.enter(|| std::net::UdpSocket::bind((src, 0)).unwrap());
    sock.set_nonblocking(true).unwrap();
    let (tx, _rx) = watch::channel(BTreeSet::new());
    let rtts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = rtts.clone();
    let prober = tokio::spawn(run_prober(
        UdpSocket::from_std(sock).unwrap(),
        table.clone(),
        origin,
        tx,
        counters.clone(),
        move |peer, rtt| seen.lock().unwrap().push((peer.to_string(), rtt)),
    ));
    let window = p1.dataplane.probes["n2"].receive_interval * p1.dataplane.probes["n2"].multiplier;
    tokio::time::sleep(window * 2 + Duration::from_millis(500)).await;
    prober.abort();
    for r in responders {
        r.abort();
    }
    assert!(
        table.lock().await.unhealthy().is_empty(),
        "n2 judged unhealthy"
    );
    assert!(
        rtts.lock().unwrap().iter().any(|(p, _)| p == "n2"),
        "no probe reply from n2 within {window:?}×2"
    );
    let refused = counters
        .unexpected
        .load(std::sync::atomic::Ordering::Relaxed)
        + counters
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 0, "probe replies refused");
}
