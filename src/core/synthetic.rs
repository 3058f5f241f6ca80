//! Synthetic snapshots for tests, benchmarks and the simulator: small hand-made fixtures and
//! large regular clusters (N sites × M nodes, one External gateway pool per site, all pools
//! peered). Malformed literals are skipped, never a panic.

use std::collections::BTreeMap;

use super::snapshot::{NodeFacts, Snapshot};
use crate::api::{
    GATEWAY_LABEL, GatewayPoolPeeringSpec, GatewayPoolSpec, GatewayPoolType, PodCidrAssignment,
    SITE_LABEL, SiteGatewayPoolAssignmentSpec, SiteSpec,
};

/// A well-formed, deterministic WireGuard public key for node number `i`.
pub fn test_key(i: u32) -> String {
    format!("{i:0>42}A=")
}

/// A node of `site` with one InternalIP, an optional ExternalIP, one pod CIDR and a key
/// derived from its name.
pub fn node(
    name: &str,
    site: &str,
    internal: &str,
    external: Option<&str>,
    pod_cidr: &str,
) -> NodeFacts {
    let key = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut labels = BTreeMap::new();
    labels.insert(SITE_LABEL.to_string(), site.to_string());
    NodeFacts {
        name: name.to_string(),
        internal_ips: internal.parse().into_iter().collect(),
        external_ips: external.and_then(|e| e.parse().ok()).into_iter().collect(),
        labels,
        pod_cidrs: pod_cidr.parse().into_iter().collect(),
        wg_public_key: Some(test_key(key)),
        underlay_mtu: None,
        site_label: Some(site.to_string()),
        problems: Vec::new(),
    }
}

/// [`node`] carrying the conventional gateway label.
pub fn gateway(
    name: &str,
    site: &str,
    internal: &str,
    external: Option<&str>,
    pod_cidr: &str,
) -> NodeFacts {
    let mut n = node(name, site, internal, external, pod_cidr);
    n.labels
        .insert(GATEWAY_LABEL.to_string(), "true".to_string());
    n
}

/// A Site owning `node_cidr` whose pods come from `pod_block`.
pub fn site(node_cidr: &str, pod_block: &str) -> SiteSpec {
    SiteSpec {
        node_cidrs: vec![node_cidr.to_string()],
        pod_cidr_assignments: vec![PodCidrAssignment {
            cidr_blocks: vec![pod_block.to_string()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A pool selecting gateway-labelled nodes of one Site.
pub fn site_pool(site: &str, pool_type: GatewayPoolType) -> GatewayPoolSpec {
    GatewayPoolSpec {
        pool_type,
        node_selector: [
            (GATEWAY_LABEL.to_string(), "true".to_string()),
            (SITE_LABEL.to_string(), site.to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Shape of a regular synthetic cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    /// At most 128 (each Site gets a /17 of 100.64.0.0/10 for pods).
    pub sites: u32,
    /// At most 128 (one /24 per node).
    pub nodes_per_site: u32,
    /// The first nodes of each Site are gateways (with an ExternalIP).
    pub gateways_per_site: u32,
}

/// Site `site-i` owns 10.i.0.0/16 and pods 100.(64 + i/2).(128·(i mod 2)).0/17; node
/// `site-i-node-j` is 10.i.(j/200).(j mod 200 + 10) with pods on the j-th /24; gateways have
/// ExternalIP 198.18.i.(j+1). Pool `gw-i` (External) serves `site-i`; one GatewayPoolPeering
/// joins all pools.
pub fn cluster(shape: ClusterShape) -> Snapshot {
    let mut snap = Snapshot::default();
    let sites = shape.sites.min(128);
    let per_site = shape.nodes_per_site.min(128);
    for i in 0..sites {
        let name = format!("site-{i}");
        let (b, c) = (64 + i / 2, 128 * (i % 2));
        snap.sites.insert(
            name.clone(),
            site(&format!("10.{i}.0.0/16"), &format!("100.{b}.{c}.0/17")),
        );
        let pool = format!("gw-{i}");
        snap.gateway_pools
            .insert(pool.clone(), site_pool(&name, GatewayPoolType::External));
        snap.assignments.insert(
            format!("{name}-{pool}"),
            SiteGatewayPoolAssignmentSpec {
                sites: vec![name.clone()],
                gateway_pools: vec![pool],
                ..Default::default()
            },
        );
        for j in 0..per_site {
            let node_name = format!("{name}-node-{j}");
            let internal = format!("10.{i}.{}.{}", j / 200, j % 200 + 10);
            let pods = format!("100.{b}.{}.0/24", c + j);
            let facts = if j < shape.gateways_per_site {
                let external = format!("198.18.{i}.{}", j + 1);
                gateway(&node_name, &name, &internal, Some(&external), &pods)
            } else {
                node(&node_name, &name, &internal, None, &pods)
            };
            snap.nodes.insert(node_name, facts);
        }
    }
    if sites >= 2 {
        snap.pool_peerings.insert(
            "backbone".to_string(),
            GatewayPoolPeeringSpec {
                gateway_pools: snap.gateway_pools.keys().cloned().collect(),
                ..Default::default()
            },
        );
    }
    snap
}
