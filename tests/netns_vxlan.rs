//! Two "nodes" in two network namespaces exchange pod traffic over per-peer VXLAN (and
//! GENEVE / IPIP where this kernel has them) with the routes the plan asked for; a restarted
//! agent changes no kernel object; bad plan entries are skipped and named; `--cleanup`
//! removes everything the agent created.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;

use netns::{Netns, require_root, veth};
use netns_nodes::{mesh_plan, owned_links, route, tunnel};
use unbounded_net::core::dataplane::{Encap, NodeDataplane, WireGuardPeer};
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::{Dataplane, Reconciler};

const A_UNDERLAY: &str = "192.168.50.1";
const B_UNDERLAY: &str = "192.168.50.2";

struct TwoNodes {
    a: Netns,
    b: Netns,
    plan_a: NodeDataplane,
    plan_b: NodeDataplane,
}

fn two_nodes(tag: &str, encap: Encap) -> TwoNodes {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    veth(&a, "eth0", "192.168.50.1/24", &b, "eth0", "192.168.50.2/24");
    let mtu = 1400;
    TwoNodes {
        plan_a: mesh_plan(
            "a",
            encap,
            mtu,
            &[("b", A_UNDERLAY, B_UNDERLAY, "10.244.2.0/24")],
        ),
        plan_b: mesh_plan(
            "b",
            encap,
            mtu,
            &[("a", B_UNDERLAY, A_UNDERLAY, "10.244.1.0/24")],
        ),
        a,
        b,
    }
}

/// Opens a dataplane in `ns`, enables forwarding and the pod bridge with `pod_cidr`.
async fn agent(ns: &Netns, pod_cidr: &str) -> Reconciler<NetlinkDataplane> {
    let mut dp = ns.enter(|| {
        NetlinkDataplane::enable_forwarding().unwrap();
        NetlinkDataplane::connect().unwrap()
    });
    dp.ensure_pod_bridge("cbr0", &[pod_cidr.parse().unwrap()])
        .await
        .unwrap();
    Reconciler::new(dp, "unwgtest0")
}

/// Links (with details), routes of every table and permanent neighbours; running timers
/// (the bridge's `gc_timer` …) are dropped because they change by themselves.
fn kernel_dump(ns: &Netns) -> String {
    let raw = ns.sh(
        "ip -d link show; ip -4 route show table all; ip -6 route show table all; \
         ip neigh show nud permanent",
    );
    let mut out = Vec::new();
    let mut skip_next = false;
    for tok in raw.split_whitespace() {
        if skip_next {
            skip_next = false;
            continue;
        }
        skip_next = tok.ends_with("_timer");
        out.push(tok);
    }
    out.join(" ")
}

async fn pod_traffic_over(tag: &str, encap: Encap) {
    let t = two_nodes(tag, encap);
    let mut ra = agent(&t.a, "10.244.1.0/24").await;
    let mut rb = agent(&t.b, "10.244.2.0/24").await;
    let none = BTreeSet::new();
    let rep_a = ra.reconcile(&t.plan_a, &none).await.unwrap();
    let rep_b = rb.reconcile(&t.plan_b, &none).await.unwrap();
    assert!(
        rep_a.apply.failures.is_empty(),
        "{:?}",
        rep_a.apply.failures
    );
    assert!(
        rep_b.apply.failures.is_empty(),
        "{:?}",
        rep_b.apply.failures
    );
    assert_eq!(
        rep_a.ops.len(),
        2,
        "one tunnel and one route: {:?}",
        rep_a.ops
    );

    let links = owned_links(&t.a.sh("ip -o link show"));
    assert_eq!(links.len(), 1, "{links:?}");
    let dev = &links[0];
    let routes = t.a.sh("ip route show proto 85");
    assert!(
        routes.starts_with("10.244.2.0/24 ")
            && routes.contains(&format!(" dev {dev} "))
            && routes.contains("mtu 1400"),
        "route as planned: {routes}"
    );
    // Pod-range traffic from A's pod gateway address to B's crosses the tunnel both ways.
    let tx = |ns: &Netns| -> u64 {
        ns.sh(&format!("cat /sys/class/net/{dev}/statistics/tx_packets"))
            .trim()
            .parse()
            .unwrap()
    };
    let before = tx(&t.a);
    t.a.sh("ping -c 3 -i 0.2 -W 2 -I 10.244.1.1 10.244.2.1");
    assert!(tx(&t.a) >= before + 3, "pings did not leave through {dev}");

    // Restart: a fresh agent over the same kernel adopts it and changes nothing.
    let dump_before = kernel_dump(&t.a);
    let mut restarted = agent(&t.a, "10.244.1.0/24").await;
    let rep = restarted.reconcile(&t.plan_a, &none).await.unwrap();
    assert!(
        rep.ops.is_empty(),
        "restart must not touch the kernel: {:?}",
        rep.ops
    );
    assert_eq!(kernel_dump(&t.a), dump_before);

    // Cleanup removes every owned device and route, nothing else.
    let report = restarted.dataplane_mut().remove_all().await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(owned_links(&t.a.sh("ip -o link show")).is_empty());
    assert_eq!(t.a.sh("ip route show proto 85"), "");
    assert!(t.a.sh("ip -o link show").contains("cbr0"));
}

#[tokio::test(flavor = "current_thread")]
async fn vxlan_pod_traffic_restart_and_cleanup() {
    if !require_root("vxlan_pod_traffic_restart_and_cleanup") {
        return;
    }
    pod_traffic_over("vx", Encap::Vxlan).await;
}

/// `true` if this kernel can create a link of `kind`; tried in a throwaway namespace.
fn kernel_has(kind: &str, args: &str) -> bool {
    let ns = Netns::new(&format!("probe{kind}"));
    ns.try_sh(&format!("ip link add probe0 type {kind} {args}"))
}

#[tokio::test(flavor = "current_thread")]
async fn geneve_pod_traffic_where_the_kernel_has_it() {
    if !require_root("geneve_pod_traffic_where_the_kernel_has_it") {
        return;
    }
    if !kernel_has("geneve", "id 1 remote 192.0.2.1") {
        netns::report_skip(
            "geneve_pod_traffic: this kernel has no GENEVE (`ip link add type geneve` fails); run it in the lab's VM mode",
        );
        return;
    }
    pod_traffic_over("gn", Encap::Geneve).await;
}

#[tokio::test(flavor = "current_thread")]
async fn ipip_pod_traffic_where_the_kernel_has_it() {
    if !require_root("ipip_pod_traffic_where_the_kernel_has_it") {
        return;
    }
    if !kernel_has("ipip", "local 192.0.2.1 remote 192.0.2.2") {
        netns::report_skip(
            "ipip_pod_traffic: this kernel has no IPIP (`ip link add type ipip` fails); run it in the lab's VM mode",
        );
        return;
    }
    pod_traffic_over("ip", Encap::Ipip).await;
}

#[tokio::test(flavor = "current_thread")]
async fn bad_peers_are_skipped_and_the_rest_keeps_working() {
    if !require_root("bad_peers_are_skipped_and_the_rest_keeps_working") {
        return;
    }
    let t = two_nodes("bad", Encap::Vxlan);
    let mut ra = agent(&t.a, "10.244.1.0/24").await;
    let mut rb = agent(&t.b, "10.244.2.0/24").await;
    let mut plan = t.plan_a.clone();
    // A peer with an MTU below 576 and a WireGuard peer with a garbage key.
    plan.tunnels.insert(
        "tiny-mtu".into(),
        tunnel(Encap::Vxlan, A_UNDERLAY, "192.168.50.9", 500),
    );
    plan.routes.insert(
        "10.244.9.0/24".parse().unwrap(),
        route(Encap::Vxlan, &[("tiny-mtu", "192.168.50.9")], 1400),
    );
    plan.wireguard.peers.insert(
        "garbage-key".into(),
        WireGuardPeer {
            public_key: "definitely not base64".into(),
            endpoint: None,
            allowed_ips: vec!["10.244.8.0/24".parse().unwrap()],
            persistent_keepalive: None,
        },
    );
    plan.routes.insert(
        "10.244.8.0/24".parse().unwrap(),
        route(Encap::WireGuard, &[("garbage-key", "198.51.100.8")], 1400),
    );
    let none = BTreeSet::new();
    let rep = ra.reconcile(&plan, &none).await.unwrap();
    rb.reconcile(&t.plan_b, &none).await.unwrap();
    let problems: Vec<String> = rep.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tiny-mtu") && p.contains("500")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("garbage-key")),
        "{problems:?}"
    );
    assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
    let state = ra.dataplane_mut().read().await.unwrap();
    let prefixes: Vec<String> = state.routes.keys().map(|p| p.to_string()).collect();
    assert_eq!(prefixes, ["10.244.2.0/24"]);
    t.a.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.1.1 10.244.2.1");
}

#[tokio::test(flavor = "current_thread")]
async fn dual_stack_pod_traffic_over_vxlan() {
    if !require_root("dual_stack_pod_traffic_over_vxlan") {
        return;
    }
    let mut t = two_nodes("ds", Encap::Vxlan);
    t.plan_a.routes.insert(
        "fd00:2::/64".parse().unwrap(),
        route(Encap::Vxlan, &[("b", B_UNDERLAY)], 1400),
    );
    t.plan_b.routes.insert(
        "fd00:1::/64".parse().unwrap(),
        route(Encap::Vxlan, &[("a", A_UNDERLAY)], 1400),
    );
    let none = BTreeSet::new();
    for (ns, plan, v4, v6) in [
        (&t.a, &t.plan_a, "10.244.1.0/24", "fd00:1::/64"),
        (&t.b, &t.plan_b, "10.244.2.0/24", "fd00:2::/64"),
    ] {
        let mut dp = ns.enter(|| {
            NetlinkDataplane::enable_forwarding().unwrap();
            NetlinkDataplane::connect().unwrap()
        });
        dp.ensure_pod_bridge("cbr0", &[v4.parse().unwrap(), v6.parse().unwrap()])
            .await
            .unwrap();
        let mut r = Reconciler::new(dp, "unwgtest0");
        let rep = r.reconcile(plan, &none).await.unwrap();
        assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
        // Read back equals what was asked: a second pass does nothing.
        let mut again = Reconciler::new(r.dataplane().clone(), "unwgtest0");
        assert!(again.reconcile(plan, &none).await.unwrap().ops.is_empty());
    }
    let routes = t.a.sh("ip -6 route show proto 85");
    assert!(
        routes.contains("fd00:2::/64 via fe80::55:1 dev unvx"),
        "{routes}"
    );
    // Wait out duplicate address detection on the bridge addresses, then ping over IPv6.
    t.a.sh(
        "for i in $(seq 50); do ip -6 addr show tentative | grep -q . || break; sleep 0.1; done",
    );
    t.b.sh(
        "for i in $(seq 50); do ip -6 addr show tentative | grep -q . || break; sleep 0.1; done",
    );
    t.a.sh("ping -6 -c 2 -i 0.2 -W 2 -I fd00:1::1 fd00:2::1");
    t.a.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.1.1 10.244.2.1");
}
