//! Gateway steering across a planned cluster: every conversation between two Sites through
//! External gateway pools comes back the way it went (so WireGuard's source check passes at
//! every hop), also after a gateway fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::dataplane::NodeDataplane;
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::steering::active_nexthops;
use super::synthetic::{ClusterShape, cluster};

fn plans(shape: ClusterShape) -> (BTreeMap<String, NodeDataplane>, BTreeMap<String, IpAddr>) {
    let snap = cluster(shape);
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let mut plans = BTreeMap::new();
    let mut pod_ip = BTreeMap::new();
    for (name, facts) in &snap.nodes {
        plans.insert(name.clone(), plan_node(&index, name).unwrap().dataplane);
        let net = facts.pod_cidrs[0];
        let ip = match net.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 5).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 5).into()),
        };
        pod_ip.insert(name.clone(), ip);
    }
    (plans, pod_ip)
}

/// Nodes a packet visits from `from` to the pod address `to` (each hop's single active
/// nexthop; every route on these paths must be pinned or have one nexthop).
fn path(
    plans: &BTreeMap<String, NodeDataplane>,
    from: &str,
    to: IpAddr,
    down: &BTreeSet<String>,
) -> Vec<String> {
    let mut at = from.to_string();
    let mut seen = vec![at.clone()];
    for _ in 0..8 {
        let plan = &plans[&at];
        if plan.cni.ranges.iter().any(|r| r.contains(&to)) {
            return seen;
        }
        let (_, route) = plan
            .routes
            .iter()
            .filter(|(p, _)| p.contains(&to))
            .max_by_key(|(p, _)| p.prefix_len())
            .unwrap_or_else(|| panic!("{at} has no route to {to}"));
        let hops = active_nexthops(route, down);
        assert_eq!(hops.len(), 1, "{at} -> {to}: {route}");
        at = hops[0].peer.clone();
        seen.push(at.clone());
    }
    panic!("loop from {from} to {to}: {seen:?}");
}

#[test]
fn conversations_through_gateways_are_symmetric_also_after_a_failure() {
    let shape = ClusterShape {
        sites: 4,
        nodes_per_site: 6,
        gateways_per_site: 2,
    };
    let (plans, ip) = plans(shape);
    let workers: Vec<&String> = plans
        .keys()
        .filter(|n| !n.ends_with("node-0") && !n.ends_with("node-1"))
        .collect();
    let mut gateways_used = BTreeSet::new();
    for down in [
        BTreeSet::new(),
        BTreeSet::from(["site-1-node-0".to_string()]),
    ] {
        for x in &workers {
            for y in &workers {
                if x == y || x[..6] == y[..6] {
                    continue;
                }
                let there = path(&plans, x, ip[*y], &down);
                let mut back = path(&plans, y, ip[*x], &down);
                back.reverse();
                assert_eq!(there, back, "{x} <-> {y} with {down:?} down");
                assert!(!there.iter().any(|n| down.contains(n)), "{there:?}");
                gateways_used.extend(there[1..there.len() - 1].iter().cloned());
            }
        }
    }
    // Every site's pool carries its conversations (one gateway per Site and pool while
    // healthy: a transit gateway cannot see the source Site, so the key is the Site's), and
    // the failed gateway's traffic moved to its sibling.
    for i in 0..4 {
        assert!(
            gateways_used
                .iter()
                .any(|g| g.starts_with(&format!("site-{i}-"))),
            "{gateways_used:?}"
        );
    }
    assert!(gateways_used.contains("site-1-node-1"), "{gateways_used:?}");
}
