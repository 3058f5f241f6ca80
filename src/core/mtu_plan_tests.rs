//! Per-node underlay MTUs through the planner: links take the smaller end, routes the
//! narrowest hop (gateways included), pods the widest route, narrower routes get MSS clamping.
//! The snapshot mirrors `scenarios/mixed-mtu.yaml`.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use super::dataplane::NodeDataplane;
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::plan_tests::add;
use super::snapshot::{NodeFacts, NodeProblem, Snapshot};
use super::synthetic::{gateway, node, site, site_pool};
use crate::api::{
    GatewayPoolType, SiteGatewayPoolAssignmentSpec, SitePeeringSpec, TunnelProtocol,
    UNDERLAY_MTU_ANNOTATION,
};

fn with_mtu(mut n: NodeFacts, mtu: u32) -> NodeFacts {
    n.underlay_mtu = Some(mtu);
    n
}

fn mixed() -> Snapshot {
    let mut s = Snapshot::default();
    s.sites
        .insert("jumbo".into(), site("10.61.0.0/24", "10.161.0.0/16"));
    s.sites
        .insert("std".into(), site("10.62.0.0/24", "10.162.0.0/16"));
    s.sites
        .insert("small".into(), site("10.63.0.0/24", "10.163.0.0/16"));
    s.site_peerings.insert(
        "dc".into(),
        SitePeeringSpec {
            sites: vec!["jumbo".into(), "std".into()],
            mesh_nodes: Some(false),
            tunnel_protocol: Some(TunnelProtocol::None),
            ..Default::default()
        },
    );
    s.gateway_pools
        .insert("gw".into(), site_pool("std", GatewayPoolType::External));
    for (name, sites, protocol) in [
        ("dc-via-std", vec!["jumbo", "std"], None),
        (
            "small-via-std",
            vec!["small"],
            Some(TunnelProtocol::WireGuard),
        ),
    ] {
        s.assignments.insert(
            name.into(),
            SiteGatewayPoolAssignmentSpec {
                sites: sites.into_iter().map(String::from).collect(),
                gateway_pools: vec!["gw".into()],
                tunnel_protocol: protocol,
                ..Default::default()
            },
        );
    }
    let n = |name, site, ip, cidr, mtu| with_mtu(node(name, site, ip, None, cidr), mtu);
    add(
        &mut s,
        n("jumbo-w1", "jumbo", "10.61.0.11", "10.161.1.0/24", 9000),
    );
    add(
        &mut s,
        n("jumbo-w2", "jumbo", "10.61.0.12", "10.161.2.0/24", 9000),
    );
    add(
        &mut s,
        n("std-w1", "std", "10.62.0.11", "10.162.1.0/24", 1500),
    );
    let gw = gateway(
        "std-gw1",
        "std",
        "10.62.0.21",
        Some("203.0.113.62"),
        "10.162.2.0/24",
    );
    add(&mut s, with_mtu(gw, 1500));
    add(
        &mut s,
        n("small-w1", "small", "10.63.0.11", "10.163.1.0/24", 1400),
    );
    add(
        &mut s,
        n("small-w2", "small", "10.63.0.12", "10.163.2.0/24", 1400),
    );
    s
}

fn plans(snap: &Snapshot, settings: PlanSettings) -> BTreeMap<String, NodeDataplane> {
    let index = PlanIndex::new(snap, settings);
    snap.nodes
        .keys()
        .map(|n| (n.clone(), plan_node(&index, n).unwrap().dataplane))
        .collect()
}

fn mtu(plans: &BTreeMap<String, NodeDataplane>, node: &str, prefix: &str) -> u32 {
    let p: IpNet = prefix.parse().unwrap();
    plans[node]
        .routes
        .get(&p)
        .unwrap_or_else(|| panic!("{node} has no route to {p}"))
        .mtu
}

#[test]
fn every_hop_takes_the_smaller_end_and_every_route_its_narrowest_hop() {
    let plans = plans(&mixed(), PlanSettings::default());
    // Inside each site: its own underlay − 50 (GENEVE/VXLAN over IPv4).
    assert_eq!(mtu(&plans, "jumbo-w1", "10.161.2.0/24"), 8950);
    assert_eq!(mtu(&plans, "std-w1", "10.162.2.0/24"), 1450);
    assert_eq!(mtu(&plans, "small-w1", "10.163.2.0/24"), 1350);
    // Unencapsulated interconnect: the 1500 end bounds both directions.
    assert_eq!(mtu(&plans, "jumbo-w1", "10.162.1.0/24"), 1500);
    assert_eq!(mtu(&plans, "std-w1", "10.161.2.0/24"), 1500);
    // Through the gateway: the WireGuard hop min(1500, 1400) − 60, from either side, even
    // where the first hop is wider (std-w1's VXLAN to the gateway, jumbo's plain 1500).
    for from in ["jumbo-w1", "std-w1"] {
        assert_eq!(mtu(&plans, from, "10.163.0.0/16"), 1340, "{from}");
    }
    assert_eq!(mtu(&plans, "small-w1", "10.162.0.0/16"), 1340);
    assert_eq!(mtu(&plans, "small-w1", "10.161.0.0/16"), 1340);
    // The gateway's own hops.
    assert_eq!(mtu(&plans, "std-gw1", "10.163.1.0/24"), 1340);
    assert_eq!(mtu(&plans, "std-gw1", "10.161.1.0/24"), 1500);
}

#[test]
fn pods_get_the_widest_route_and_narrower_routes_are_clamped() {
    let plans = plans(&mixed(), PlanSettings::default());
    let jumbo = &plans["jumbo-w1"];
    assert_eq!(jumbo.cni.mtu, 8950);
    let clamped = &jumbo.masquerade.mss_clamp_cidrs;
    for p in ["10.162.1.0/24", "10.162.2.0/24", "10.163.0.0/16"] {
        assert!(clamped.contains(&p.parse().unwrap()), "{p} in {clamped:?}");
    }
    assert!(!clamped.contains(&"10.161.2.0/24".parse().unwrap()));
    // A small-site pod already fits everything but its one narrower route.
    assert_eq!(plans["small-w1"].cni.mtu, 1350);
    assert!(
        plans["small-w1"]
            .masquerade
            .mss_clamp_cidrs
            .iter()
            .all(|p| mtu(&plans, "small-w1", &p.to_string()) < 1350)
    );
}

#[test]
fn a_node_without_a_published_mtu_is_assumed_at_the_cluster_default() {
    let mut snap = mixed();
    snap.nodes.get_mut("small-w2").unwrap().underlay_mtu = None;
    let settings = PlanSettings {
        underlay_mtu: 1280,
        ..PlanSettings::default()
    };
    let plans = plans(&snap, settings);
    assert_eq!(mtu(&plans, "small-w1", "10.163.2.0/24"), 1230);
    // Its own agent knows better: what it measured wins over the (missing) published value.
    snap.set_own_underlay_mtu("small-w2", 1400);
    let index = PlanIndex::new(&snap, settings);
    let own = plan_node(&index, "small-w2").unwrap().dataplane;
    assert_eq!(
        own.routes[&"10.163.1.0/24".parse::<IpNet>().unwrap()].mtu,
        1350
    );
}

#[test]
fn a_garbage_annotation_is_a_node_problem_and_the_default_applies() {
    let mut n = Node::default();
    n.metadata.name = Some("n1".into());
    for (value, want) in [("9000", Some(9000)), ("9k", None), ("100000", None)] {
        n.metadata.annotations = Some(BTreeMap::from([(
            UNDERLAY_MTU_ANNOTATION.to_string(),
            value.to_string(),
        )]));
        let facts = NodeFacts::from_node(&n);
        assert_eq!(facts.underlay_mtu, want, "{value}");
        let flagged = matches!(
            facts.problems.as_slice(),
            [NodeProblem::MalformedUnderlayMtu { value: v, .. }] if v == value
        );
        assert_eq!(flagged, want.is_none(), "{value}: {:?}", facts.problems);
    }
}
