//! Scenario tests of gateway pools, links and per-node plans, incl. the source document's
//! traffic flow and externally peered sites.

use std::net::IpAddr;

use ipnet::IpNet;

use super::dataplane::{Encap, NodeDataplane};
use super::gateways::{Dest, pool_status};
use super::links::{Scope, plan_link};
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::plan_problem::PlanProblem;
use super::snapshot::Snapshot;
use super::synthetic::{gateway, node, site, site_pool};
use crate::api::{
    GatewayPoolPeeringSpec, GatewayPoolType, SiteGatewayPoolAssignmentSpec, SitePeeringSpec,
    TunnelProtocol,
};

fn assign(snap: &mut Snapshot, name: &str, sites: &[&str], pools: &[&str]) {
    snap.assignments.insert(
        name.into(),
        SiteGatewayPoolAssignmentSpec {
            sites: sites.iter().map(|s| s.to_string()).collect(),
            gateway_pools: pools.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
}

fn peer_pools(snap: &mut Snapshot, name: &str, pools: &[&str]) {
    snap.pool_peerings.insert(
        name.into(),
        GatewayPoolPeeringSpec {
            gateway_pools: pools.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    );
}

pub(super) fn add(snap: &mut Snapshot, n: super::snapshot::NodeFacts) {
    snap.nodes.insert(n.name.clone(), n);
}

/// The source document's picture: two sites, each with its own External gateway pool,
/// the pools peered.
pub(super) fn two_sites() -> Snapshot {
    let mut s = Snapshot::default();
    s.sites
        .insert("a".into(), site("10.1.0.0/16", "100.64.0.0/16"));
    s.sites
        .insert("b".into(), site("10.2.0.0/16", "100.65.0.0/16"));
    s.gateway_pools
        .insert("gw-a".into(), site_pool("a", GatewayPoolType::External));
    s.gateway_pools
        .insert("gw-b".into(), site_pool("b", GatewayPoolType::External));
    assign(&mut s, "a-gw", &["a"], &["gw-a"]);
    assign(&mut s, "b-gw", &["b"], &["gw-b"]);
    peer_pools(&mut s, "a-b", &["gw-a", "gw-b"]);
    add(
        &mut s,
        node("a-w1", "a", "10.1.0.10", None, "100.64.1.0/24"),
    );
    add(
        &mut s,
        gateway(
            "a-g1",
            "a",
            "10.1.0.1",
            Some("203.0.113.1"),
            "100.64.2.0/24",
        ),
    );
    add(
        &mut s,
        gateway(
            "a-g2",
            "a",
            "10.1.0.2",
            Some("203.0.113.2"),
            "100.64.3.0/24",
        ),
    );
    add(
        &mut s,
        node("b-w1", "b", "10.2.0.10", None, "100.65.1.0/24"),
    );
    add(
        &mut s,
        gateway(
            "b-g1",
            "b",
            "10.2.0.1",
            Some("198.51.100.1"),
            "100.65.2.0/24",
        ),
    );
    s
}

fn plans(snap: &Snapshot) -> std::collections::BTreeMap<String, NodeDataplane> {
    let index = PlanIndex::new(snap, PlanSettings::default());
    snap.nodes
        .keys()
        .map(|n| (n.clone(), plan_node(&index, n).unwrap().dataplane))
        .collect()
}

fn lpm(plan: &NodeDataplane, dst: IpAddr) -> Option<&super::dataplane::Route> {
    plan.routes
        .iter()
        .filter(|(p, _)| p.contains(&dst))
        .max_by_key(|(p, _)| p.prefix_len())
        .map(|(_, r)| r)
}

/// Follows routes hop by hop (first ECMP member) until the node owning `dst`.
fn trace(snap: &Snapshot, from: &str, dst: IpAddr) -> Vec<(String, Encap)> {
    let plans = plans(snap);
    let mut at = from.to_string();
    let mut path = Vec::new();
    for _ in 0..8 {
        if snap.nodes[&at].pod_cidrs.iter().any(|c| c.contains(&dst)) {
            return path;
        }
        let route = lpm(&plans[&at], dst).unwrap_or_else(|| panic!("{at} has no route to {dst}"));
        let hop = &route.nexthops[0];
        path.push((hop.peer.clone(), hop.encap));
        at = hop.peer.clone();
    }
    panic!("routing loop from {from} to {dst}: {path:?}");
}

#[test]
fn traffic_flow_pod_to_local_gateway_to_remote_gateway_to_node() {
    let snap = two_sites();
    let path = trace(&snap, "a-w1", "100.65.1.7".parse().unwrap());
    assert_eq!(
        path,
        vec![
            ("a-g1".to_string(), Encap::Geneve),
            ("b-g1".to_string(), Encap::WireGuard),
            ("b-w1".to_string(), Encap::Geneve),
        ]
    );
    let back = trace(&snap, "b-w1", "100.64.1.9".parse().unwrap());
    assert_eq!(back[0], ("b-g1".to_string(), Encap::Geneve));
    assert_eq!(back[1].1, Encap::WireGuard);
    assert_eq!(back[2], ("a-w1".to_string(), Encap::Geneve));
}

#[test]
fn worker_spreads_remote_site_over_all_gateways_of_its_pool() {
    let snap = two_sites();
    let plans = plans(&snap);
    let block: IpNet = "100.65.0.0/16".parse().unwrap();
    let route = &plans["a-w1"].routes[&block];
    let peers: Vec<&str> = route.nexthops.iter().map(|h| h.peer.as_str()).collect();
    assert_eq!(peers, ["a-g1", "a-g2"]);
    // First hop GENEVE (1450) but the gateway-to-gateway hop is WireGuard over IPv4 (1440).
    assert_eq!(route.mtu, 1440);
    // Pods get the widest route (GENEVE inside the site); the remote site's is clamped.
    assert_eq!(plans["a-w1"].cni.mtu, 1450);
    assert!(plans["a-w1"].masquerade.mss_clamp_cidrs.contains(&block));
    // Remote gateways ECMP too, and reach each other over WireGuard on external IPs.
    let back = &plans["b-g1"].routes[&"100.64.0.0/16".parse::<IpNet>().unwrap()];
    assert_eq!(back.nexthops.len(), 2);
    let wg = &plans["a-g1"].wireguard.peers["b-g1"];
    assert_eq!(wg.endpoint, Some("198.51.100.1:51820".parse().unwrap()));
    assert!(wg.allowed_ips.contains(&block));
    assert_eq!(wg.persistent_keepalive, Some(25));
}

#[test]
fn gateway_probes_reach_each_gateway_through_its_own_link() {
    let snap = two_sites();
    let plans = plans(&snap);
    let w = &plans["a-w1"];
    // a-g1 is in a-w1's site: its /24 is routed straight to it, so no host route is needed.
    assert_eq!(
        w.probes["a-g1"].address,
        "100.64.2.1:51821".parse().unwrap()
    );
    // a-g1 → b-g1: b-g1's /24 sits inside site b's block (ECMP); a host route pins the probe.
    let g = &plans["a-g1"];
    let host: IpNet = "100.65.2.1/32".parse().unwrap();
    assert_eq!(g.routes[&host].nexthops[0].peer, "b-g1");
    assert!(g.wireguard.peers["b-g1"].allowed_ips.contains(&host));
}

/// The source document's externally peered sites: ExpressRoute between on-prem and Azure.
fn expressroute() -> Snapshot {
    let mut s = Snapshot::default();
    s.sites
        .insert("site-on-prem".into(), site("10.1.0.0/16", "100.64.0.0/16"));
    s.sites
        .insert("site-azure".into(), site("10.2.0.0/16", "100.65.0.0/16"));
    s.site_peerings.insert(
        "azure-expressroute-peering".into(),
        serde_yaml::from_str(
            "sites: [site-on-prem, site-azure]\nmeshNodes: false\ntunnelProtocol: None\n",
        )
        .unwrap(),
    );
    s.gateway_pools.insert(
        "gw-on-prem".into(),
        site_pool("site-on-prem", GatewayPoolType::External),
    );
    s.gateway_pools.insert(
        "gw-azure".into(),
        site_pool("site-azure", GatewayPoolType::External),
    );
    peer_pools(&mut s, "op-az", &["gw-on-prem", "gw-azure"]);
    add(
        &mut s,
        node("op-1", "site-on-prem", "10.1.0.10", None, "100.64.1.0/24"),
    );
    add(
        &mut s,
        gateway(
            "op-g",
            "site-on-prem",
            "10.1.0.1",
            Some("203.0.113.1"),
            "100.64.2.0/24",
        ),
    );
    add(
        &mut s,
        node("az-1", "site-azure", "10.2.0.10", None, "100.65.1.0/24"),
    );
    add(
        &mut s,
        gateway(
            "az-g",
            "site-azure",
            "10.2.0.1",
            Some("198.51.100.1"),
            "100.65.2.0/24",
        ),
    );
    s
}

#[test]
fn externally_peered_sites_route_plainly_over_internal_ips() {
    let snap = expressroute();
    let plans = plans(&snap);
    let p = &plans["op-1"];
    let route = &p.routes[&"100.65.1.0/24".parse::<IpNet>().unwrap()];
    assert_eq!(route.nexthops.len(), 1);
    assert_eq!(route.nexthops[0].encap, Encap::None);
    assert_eq!(
        route.nexthops[0].underlay,
        "10.2.0.10".parse::<IpAddr>().unwrap()
    );
    assert_eq!(route.mtu, 1500);
    assert!(p.wireguard.peers.is_empty());
    // Only the same-site link to op-g is encapsulated; nothing towards site-azure is.
    assert_eq!(p.tunnels.keys().collect::<Vec<_>>(), ["op-g"]);
    // Gateway pool peering between such sites resolves to internal IPs too; the pool
    // peering leaves the protocol unset, so the SitePeering's explicit None applies.
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let link = plan_link(&index, "op-g", "az-g").unwrap().unwrap();
    assert!(!link.external);
    assert_eq!(link.remote, "10.2.0.1".parse::<IpAddr>().unwrap());
    assert!(matches!(link.governing, Scope::PoolPeering { .. }));
    assert_eq!(link.encap, Encap::None);
    // Asking the pool peering for Auto explicitly changes nothing; WireGuard on it wins.
    let mut wg = snap.clone();
    wg.pool_peerings.get_mut("op-az").unwrap().tunnel_protocol = Some(TunnelProtocol::WireGuard);
    let index = PlanIndex::new(&wg, PlanSettings::default());
    let link = plan_link(&index, "op-g", "az-g").unwrap().unwrap();
    assert_eq!(
        (link.encap, link.external, link.mtu),
        (Encap::WireGuard, false, 1440)
    );
}

#[test]
fn meshed_peered_sites_skip_gateways_with_direct_wireguard() {
    let mut snap = two_sites();
    snap.nodes.get_mut("b-w1").unwrap().external_ips = vec!["198.51.100.9".parse().unwrap()];
    snap.site_peerings.insert(
        "a-b".into(),
        SitePeeringSpec {
            sites: vec!["a".into(), "b".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        trace(&snap, "a-w1", "100.65.1.7".parse().unwrap()),
        vec![("b-w1".to_string(), Encap::WireGuard)]
    );
    let plans = plans(&snap);
    let peer = &plans["a-w1"].wireguard.peers["b-w1"];
    assert_eq!(peer.endpoint, Some("198.51.100.9:51820".parse().unwrap()));
    // a-w1 has no ExternalIP: b-w1 cannot dial it and waits for a-w1's handshake.
    assert_eq!(plans["b-w1"].wireguard.peers["a-w1"].endpoint, None);
    assert_eq!(peer.persistent_keepalive, Some(25));
}

#[test]
fn pool_membership_needs_key_and_external_ip() {
    let mut snap = two_sites();
    snap.nodes.get_mut("a-g2").unwrap().wg_public_key = None;
    add(
        &mut snap,
        gateway("a-g3", "a", "10.1.0.3", None, "100.64.5.0/24"),
    );
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert_eq!(index.pools.pools["gw-a"].members, ["a-g1"]);
    let problems = index.problems();
    assert!(problems.contains(&PlanProblem::GatewayWithoutKey {
        pool: "gw-a".into(),
        node: "a-g2".into()
    }));
    assert!(problems.contains(&PlanProblem::GatewayWithoutExternalIp {
        pool: "gw-a".into(),
        node: "a-g3".into()
    }));
    // An Internal pool takes a gateway without ExternalIP.
    snap.gateway_pools.get_mut("gw-a").unwrap().pool_type = GatewayPoolType::Internal;
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert_eq!(index.pools.pools["gw-a"].members, ["a-g1", "a-g3"]);
}

#[test]
fn unknown_references_are_problems_not_panics() {
    let mut snap = two_sites();
    assign(&mut snap, "typo", &["a", "nowhere"], &["gw-missing"]);
    peer_pools(&mut snap, "lonely", &["gw-a", "gw-gone"]);
    snap.gateway_pools
        .get_mut("gw-b")
        .unwrap()
        .node_selector
        .clear();
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let text: Vec<String> = index.problems().iter().map(|p| p.to_string()).collect();
    for want in [
        "SiteGatewayPoolAssignment/typo references Site \"nowhere\"",
        "SiteGatewayPoolAssignment/typo references GatewayPool \"gw-missing\"",
        "GatewayPoolPeering/lonely lists fewer than two",
        "GatewayPool/gw-b: nodeSelector is empty",
    ] {
        assert!(
            text.iter().any(|t| t.contains(want)),
            "missing {want:?} in {text:#?}"
        );
    }
    for n in snap.nodes.keys() {
        plan_node(&index, n).unwrap();
    }
    assert!(plan_node(&index, "ghost").is_err());
}

/// Three sites in a chain of pools: p0 – p1 – p2.
fn chain() -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..3 {
        let name = format!("s{i}");
        s.sites.insert(
            name.clone(),
            site(&format!("10.{i}.0.0/16"), &format!("100.{}.0.0/16", 64 + i)),
        );
        s.gateway_pools
            .insert(format!("p{i}"), site_pool(&name, GatewayPoolType::External));
        assign(&mut s, &format!("a{i}"), &[&name], &[&format!("p{i}")]);
        add(
            &mut s,
            node(
                &format!("w{i}"),
                &name,
                &format!("10.{i}.0.10"),
                None,
                &format!("100.{}.1.0/24", 64 + i),
            ),
        );
        add(
            &mut s,
            gateway(
                &format!("g{i}"),
                &name,
                &format!("10.{i}.0.1"),
                Some(&format!("203.0.113.{}", i + 1)),
                &format!("100.{}.2.0/24", 64 + i),
            ),
        );
    }
    peer_pools(&mut s, "p01", &["p0", "p1"]);
    peer_pools(&mut s, "p12", &["p1", "p2"]);
    s
}

#[test]
fn multi_hop_reachability_has_path_length_and_next_pool() {
    let snap = chain();
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let reach = &index.pools.pools["p0"].reach[&Dest::Site("s2")];
    assert_eq!((reach.distance, reach.via.as_slice()), (2, &["p1"][..]));
    let status = pool_status(&index, "p0").unwrap();
    assert_eq!(status.node_count, 1);
    assert_eq!(status.connected_sites, ["s0"]);
    let s2 = status
        .reachable_sites
        .iter()
        .find(|r| r.name == "s2")
        .unwrap();
    assert_eq!((s2.path_length, s2.via.as_deref()), (2, Some("p1")));
    assert_eq!(status.nodes[0].health_endpoints, ["100.64.2.1:51821"]);
    assert_eq!(
        trace(&snap, "w0", "100.66.1.5".parse().unwrap())
            .iter()
            .map(|h| h.0.as_str())
            .collect::<Vec<_>>(),
        ["g0", "g1", "g2", "w2"]
    );
    assert!(pool_status(&index, "nope").is_none());
}

#[test]
fn cutting_a_peering_makes_the_far_site_unreachable() {
    let mut snap = chain();
    snap.pool_peerings.remove("p12");
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert!(
        !index.pools.pools["p0"]
            .reach
            .contains_key(&Dest::Site("s2"))
    );
    let plan = plan_node(&index, "w0").unwrap().dataplane;
    assert!(
        !plan
            .routes
            .contains_key(&"100.66.0.0/16".parse::<IpNet>().unwrap())
    );
    assert!(
        plan.routes
            .contains_key(&"100.65.0.0/16".parse::<IpNet>().unwrap())
    );
}

#[test]
fn masquerade_and_cni_come_from_the_site() {
    let mut snap = two_sites();
    let a = snap.sites.get_mut("a").unwrap();
    a.non_masquerade_cidrs = vec!["192.168.0.0/16".into(), "bogus".into()];
    a.manage_cni_plugin = Some(false);
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let plan = plan_node(&index, "a-w1").unwrap().dataplane;
    assert_eq!(
        plan.masquerade.non_masquerade_cidrs,
        ["192.168.0.0/16".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        plan.masquerade.cluster_pod_cidrs,
        [
            "100.64.0.0/16".parse::<IpNet>().unwrap(),
            "100.65.0.0/16".parse().unwrap()
        ]
    );
    assert_eq!(
        plan.masquerade.source_cidrs,
        ["100.64.1.0/24".parse::<IpNet>().unwrap()]
    );
    assert!(!plan.cni.manage);
    assert_eq!(plan.cni.ranges, ["100.64.1.0/24".parse::<IpNet>().unwrap()]);
    assert!(
        index
            .problems()
            .iter()
            .any(|p| p.to_string().contains("\"bogus\" is not a CIDR"))
    );
}

#[test]
fn pod_cidr_outside_the_site_pool_is_still_routed() {
    let mut snap = two_sites();
    add(
        &mut snap,
        node("b-odd", "b", "10.2.0.20", None, "172.20.0.0/24"),
    );
    let plan = &plans(&snap)["a-w1"];
    let route = &plan.routes[&"172.20.0.0/24".parse::<IpNet>().unwrap()];
    assert_eq!(route.nexthops.len(), 2);
}

#[test]
fn route_mtu_counts_every_hop_of_the_path() {
    let mut snap = two_sites();
    // The last hop, b's gateway to b's nodes, is capped at 1300 by b's assignment.
    snap.assignments.get_mut("b-gw").unwrap().tunnel_mtu = Some(1300);
    let plans = plans(&snap);
    let route = &plans["a-w1"].routes[&"100.65.0.0/16".parse::<IpNet>().unwrap()];
    assert_eq!(route.mtu, 1300);
    // Routes inside site a are untouched, and the pods get their MTU; the narrower route
    // has its TCP MSS clamped instead.
    let local = &plans["a-w1"].routes[&"100.64.2.0/24".parse::<IpNet>().unwrap()];
    assert_eq!(local.mtu, 1450);
    assert_eq!(plans["a-w1"].cni.mtu, 1450);
    assert!(
        plans["a-w1"]
            .masquerade
            .mss_clamp_cidrs
            .contains(&"100.65.0.0/16".parse::<IpNet>().unwrap())
    );
}

#[test]
fn node_outside_every_site_gets_only_local_config() {
    let mut snap = two_sites();
    add(
        &mut snap,
        node("stray", "a", "192.0.2.10", None, "100.64.9.0/24"),
    );
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert!(index.problems().contains(&PlanProblem::NodeWithoutSite {
        node: "stray".into()
    }));
    let plan = plan_node(&index, "stray").unwrap().dataplane;
    assert!(plan.routes.is_empty() && plan.wireguard.peers.is_empty());
    assert_eq!(plan.cni.ranges, ["100.64.9.0/24".parse::<IpNet>().unwrap()]);
    // Nobody routes to it either.
    let w = plan_node(&index, "a-w1").unwrap().dataplane;
    assert!(!w.probes.contains_key("stray"));
}

#[test]
fn explicit_site_assignment_overrides_addresses_and_cache_is_stable() {
    let snap = two_sites();
    let sites: std::collections::BTreeMap<&str, &str> = [
        ("a-w1", "b"),
        ("a-g1", "a"),
        ("a-g2", "a"),
        ("b-w1", "b"),
        ("b-g1", "b"),
    ]
    .into();
    let index = PlanIndex::with_sites(&snap, PlanSettings::default(), &sites);
    assert_eq!(index.site("a-w1"), Some("b"));
    let first = plan_node(&index, "a-w1").unwrap();
    // a-w1 now sits in b: b's gateway is its gateway.
    let route = &first.dataplane.routes[&"100.64.0.0/16".parse::<IpNet>().unwrap()];
    assert_eq!(route.nexthops[0].peer, "b-g1");
    // Second plan on the same index reads the path-MTU cache and must not differ.
    assert_eq!(plan_node(&index, "a-w1").unwrap(), first);
}
