//! Arbitrary snapshots — dangling references, garbage CIDRs, mixed families, missing keys —
//! never make planning panic, and links agree from both ends.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::diff::diff;
use super::gateways::pool_status;
use super::links::plan_link;
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::snapshot::{NodeFacts, Snapshot};
use crate::api::{
    GATEWAY_LABEL, GatewayPoolPeeringSpec, GatewayPoolSpec, GatewayPoolType, HealthCheckSettings,
    PodCidrAssignment, SITE_LABEL, SiteGatewayPoolAssignmentSpec, SitePeeringSpec, SiteSpec,
    TunnelProtocol,
};

const SITES: &[&str] = &["s0", "s1", "s2", "ghost"];
const POOLS: &[&str] = &["p0", "p1", "p2", "ghost"];
const CIDRS: &[&str] = &[
    "10.0.0.0/16",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "fd00::/64",
    "100.64.0.0/16",
    "100.64.1.0/24",
    "0.0.0.0/0",
    "not-a-cidr",
];
const IPS: &[&str] = &["10.0.0.1", "10.0.0.2", "10.1.0.1", "fd00::1", "fd00::2"];
const EXTERNAL: &[&str] = &["203.0.113.1", "2001:db8::1", "10.0.0.1"];
const PODS: &[&str] = &[
    "100.64.1.0/24",
    "100.64.2.0/24",
    "100.64.0.0/16",
    "fd01::/64",
    "100.64.1.0/32",
];
const DURATIONS: &[&str] = &["1s", "100ms", "0s", "fast", "3h"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list).prop_map(str::to_string)
}

fn names(list: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(pick(list), 0..4)
}

fn protocol() -> impl Strategy<Value = Option<TunnelProtocol>> {
    prop::option::of(prop::sample::select(vec![
        TunnelProtocol::WireGuard,
        TunnelProtocol::Geneve,
        TunnelProtocol::Vxlan,
        TunnelProtocol::Ipip,
        TunnelProtocol::None,
        TunnelProtocol::Auto,
    ]))
}

fn health() -> impl Strategy<Value = Option<HealthCheckSettings>> {
    prop::option::of(
        (
            prop::option::of(any::<bool>()),
            prop::option::of(pick(DURATIONS)),
            prop::option::of(pick(DURATIONS)),
            prop::option::of(0u32..300),
        )
            .prop_map(|(enabled, tx, rx, m)| HealthCheckSettings {
                enabled,
                transmit_interval: tx,
                receive_interval: rx,
                detect_multiplier: m,
            }),
    )
}

fn mtu() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(prop_oneof![0u32..10_000, Just(1400)])
}

fn node() -> impl Strategy<Value = NodeFacts> {
    (
        prop::collection::vec(pick(IPS), 0..3),
        prop::collection::vec(pick(EXTERNAL), 0..2),
        prop::collection::vec(pick(PODS), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(pick(SITES)),
        prop::option::of(prop_oneof![Just(1400u32), Just(1500), Just(9000)]),
    )
        .prop_map(|(internal, external, pods, key, gw, site, underlay_mtu)| {
            let mut labels = BTreeMap::new();
            if gw {
                labels.insert(GATEWAY_LABEL.to_string(), "true".to_string());
            }
            if let Some(s) = &site {
                labels.insert(SITE_LABEL.to_string(), s.clone());
            }
            NodeFacts {
                name: String::new(),
                internal_ips: internal.iter().filter_map(|i| i.parse().ok()).collect(),
                external_ips: external.iter().filter_map(|i| i.parse().ok()).collect(),
                labels,
                pod_cidrs: pods.iter().filter_map(|p| p.parse().ok()).collect(),
                wg_public_key: key.then(|| super::synthetic::test_key(1)),
                underlay_mtu,
                site_label: site,
                problems: Vec::new(),
            }
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    let site = (
        names(CIDRS),
        names(CIDRS),
        names(CIDRS),
        protocol(),
        mtu(),
        health(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(node_cidrs, blocks, nonmasq, p, m, h, cni)| SiteSpec {
            node_cidrs,
            pod_cidr_assignments: vec![PodCidrAssignment {
                cidr_blocks: blocks,
                ..Default::default()
            }],
            manage_cni_plugin: cni,
            non_masquerade_cidrs: nonmasq,
            tunnel_protocol: p,
            tunnel_mtu: m,
            health_check_settings: h,
            ..Default::default()
        });
    let pool = (
        any::<bool>(),
        any::<bool>(),
        names(CIDRS),
        protocol(),
        mtu(),
        health(),
    )
        .prop_map(|(internal, selector, routed, p, m, h)| GatewayPoolSpec {
            pool_type: if internal {
                GatewayPoolType::Internal
            } else {
                GatewayPoolType::External
            },
            node_selector: if selector {
                [(GATEWAY_LABEL.to_string(), "true".to_string())]
                    .into_iter()
                    .collect()
            } else {
                BTreeMap::new()
            },
            routed_cidrs: routed,
            tunnel_protocol: p,
            tunnel_mtu: m,
            health_check_settings: h,
        });
    let sgpa = (names(SITES), names(POOLS), protocol(), mtu(), health()).prop_map(
        |(s, p, proto, m, h)| SiteGatewayPoolAssignmentSpec {
            sites: s,
            gateway_pools: p,
            tunnel_protocol: proto,
            tunnel_mtu: m,
            health_check_settings: h,
        },
    );
    let peering = (
        names(SITES),
        prop::option::of(any::<bool>()),
        protocol(),
        mtu(),
        health(),
    )
        .prop_map(|(s, mesh, proto, m, h)| SitePeeringSpec {
            sites: s,
            mesh_nodes: mesh,
            tunnel_protocol: proto,
            tunnel_mtu: m,
            health_check_settings: h,
        });
    let gpp = (names(POOLS), protocol(), mtu(), health()).prop_map(|(p, proto, m, h)| {
        GatewayPoolPeeringSpec {
            gateway_pools: p,
            tunnel_protocol: proto,
            tunnel_mtu: m,
            health_check_settings: h,
        }
    });
    (
        prop::collection::vec(node(), 0..7),
        prop::collection::btree_map(pick(&SITES[..3]), site, 0..4),
        prop::collection::btree_map(pick(&POOLS[..3]), pool, 0..3),
        prop::collection::vec(sgpa, 0..3),
        prop::collection::vec(peering, 0..3),
        prop::collection::vec(gpp, 0..3),
    )
        .prop_map(|(nodes, sites, pools, sgpas, peerings, gpps)| Snapshot {
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, mut n)| {
                    n.name = format!("n{i}");
                    (n.name.clone(), n)
                })
                .collect(),
            sites,
            gateway_pools: pools,
            assignments: sgpas
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("a{i}"), s))
                .collect(),
            site_peerings: peerings
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("sp{i}"), s))
                .collect(),
            pool_peerings: gpps
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("gpp{i}"), s))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_snapshots_plan_without_panic(snap in snapshot()) {
        for index in [
            PlanIndex::new(&snap, PlanSettings::default()),
            PlanIndex::with_sites(
                &snap,
                PlanSettings::default(),
                &snap.nodes.iter().filter_map(|(n, f)| Some((n.as_str(), f.site_label.clone()?))).collect(),
            ),
        ] {
            for name in snap.nodes.keys() {
                let plan = plan_node(&index, name).unwrap();
                prop_assert!(diff(&plan.dataplane, &plan.dataplane).is_empty());
                let dp = &plan.dataplane;
                for (prefix, route) in &dp.routes {
                    prop_assert!(!route.nexthops.is_empty());
                    prop_assert!(route.nexthops.iter().all(|h| h.peer != *name));
                    // Pods fit the widest route; exactly the narrower ones are clamped.
                    prop_assert!(route.mtu <= dp.cni.mtu);
                    prop_assert_eq!(
                        dp.masquerade.mss_clamp_cidrs.contains(prefix),
                        route.mtu < dp.cni.mtu
                    );
                }
                let empty = super::dataplane::NodeDataplane::default();
                let _ = super::diff::describe(&diff(&empty, &plan.dataplane));
                for other in snap.nodes.keys() {
                    let ab = plan_link(&index, name, other);
                    let ba = plan_link(&index, other, name);
                    match (ab, ba) {
                        (Ok(Some(ab)), Ok(Some(ba))) => {
                            prop_assert_eq!(ab.encap, ba.encap);
                            prop_assert_eq!(ab.mtu, ba.mtu);
                            prop_assert!(ab.mtu <= index.underlay_mtu(name).min(index.underlay_mtu(other)));
                            prop_assert_eq!(&ab.governing, &ba.governing);
                            prop_assert_eq!(ab.external, ba.external);
                        }
                        (Ok(None), rest) | (rest, Ok(None)) => {
                            prop_assert!(matches!(rest, Ok(None)), "one-sided link {} <-> {}: {:?}", name, other, rest);
                        }
                        _ => {}
                    }
                }
            }
            for pool in snap.gateway_pools.keys() {
                prop_assert!(pool_status(&index, pool).is_some());
            }
        }
    }
}
