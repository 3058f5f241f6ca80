//! The desired data plane of one node, from the per-snapshot [`PlanIndex`].
//!
//! Routes:
//! - Nodes of the node's own Site, of Sites peered with it, and (for a gateway) of Sites its
//!   pools serve: one route per pod CIDR, straight to that node over the pair's link.
//! - Every other Site: its pod prefixes (the Site's pod pools, not per node — a node joining a
//!   remote Site changes nothing here) via the gateways on the shortest pool path, ECMP across
//!   all of them. A worker enters a pool its Site is assigned to; a gateway forwards to the
//!   next pools along the peerings.
//! - Pools' `routedCidrs` likewise, towards the pool that routes them.
//! - A host route to each link peer's health endpoint when no direct route covers it, so a
//!   probe tests exactly that tunnel rather than whichever ECMP member a hash picks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tracing::instrument;

use super::dataplane::{
    CniConfig, Encap, HEALTH_PROBE_PORT, MasqueradeConfig, NextHop, NodeDataplane, OVERLAY_VNI,
    ProbeTarget, Route, TunnelPeer, WireGuardConfig, WireGuardPeer,
};
use super::gateways::Dest;
use super::links::{Link, plan_link};
use super::plan_index::PlanIndex;
use super::plan_problem::{PlanError, PlanProblem};
use crate::api::GatewayPoolType;

/// The plan of one node and what got in its way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    pub dataplane: NodeDataplane,
    /// Links to every peer, keyed by peer name (what the routes' nexthops refer to).
    pub links: BTreeMap<String, Link>,
    pub problems: Vec<PlanProblem>,
}

/// The overlay address a node's health responder listens on: the first address of its first
/// pod CIDR (IPv4 preferred), i.e. the CNI bridge address.
pub fn health_address(pod_cidrs: &[IpNet]) -> Option<IpAddr> {
    let net = pod_cidrs
        .iter()
        .find(|c| c.addr().is_ipv4())
        .or_else(|| pod_cidrs.first())?;
    if net.prefix_len() == net.max_prefix_len() {
        return Some(net.addr());
    }
    Some(match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(1)).into()),
    })
}

fn nexthop(link: &Link) -> NextHop {
    NextHop {
        peer: link.peer.clone(),
        encap: link.encap,
        underlay: link.remote,
        vni: matches!(link.encap, Encap::Geneve | Encap::Vxlan).then_some(OVERLAY_VNI),
    }
}

fn insert_route(
    routes: &mut BTreeMap<IpNet, Route>,
    problems: &mut Vec<PlanProblem>,
    node: &str,
    prefix: IpNet,
    route: Route,
) {
    if let Some(existing) = routes.get(&prefix) {
        if *existing != route {
            problems.push(PlanProblem::RouteConflict {
                node: node.to_string(),
                prefix: prefix.to_string(),
                kept: existing
                    .nexthops
                    .iter()
                    .map(|h| h.peer.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        return;
    }
    routes.insert(prefix, route);
}

/// Whether a gateway route's path may cross WireGuard: on this node's own links to the
/// gateways, or beyond them because the pool is External (its members are reached over
/// public addresses, where WireGuard wins). Decided from the specs, not from whichever nodes
/// exist, so a node joining anywhere never flips a route between ECMP and one gateway.
fn crosses_wireguard(index: &PlanIndex<'_>, hops: &[NextHop], pool: &str) -> bool {
    hops.iter().any(|h| h.encap == Encap::WireGuard)
        || index.pools.pools[pool].spec.pool_type == GatewayPoolType::External
}

/// The key both ends of a conversation derive for the gateway of `pool` that carries it
/// (see [`crate::core::steering`]): the pair of Sites when the pool serves both, else the
/// Site on the pool's side — the destination's when the pool serves it, this node's when the
/// pool serves this node's Site — and the pool alone for a transit pool serving neither.
fn pin_key(index: &PlanIndex<'_>, own: Option<&str>, pool: &str, dest: Dest<'_>) -> String {
    let serves = |s: &str| index.pools.pools[pool].connected.contains_key(s);
    let dest_name = match dest {
        Dest::Site(s) => s.to_string(),
        Dest::Routed(p) => format!("routed/{p}"),
    };
    let dest_served = match dest {
        Dest::Site(s) => serves(s),
        Dest::Routed(p) => p == pool,
    };
    match own.filter(|s| serves(s)) {
        Some(s) if dest_served => {
            let (a, b) = if s <= dest_name.as_str() {
                (s, dest_name.as_str())
            } else {
                (dest_name.as_str(), s)
            };
            format!("{a}|{b}")
        }
        Some(s) => s.to_string(),
        None if dest_served => dest_name,
        None => format!("pool/{pool}"),
    }
}

/// A WireGuard peer's allowed IPs plus its own pod CIDRs, sorted and deduplicated.
fn with_own_cidrs(mut allowed: Vec<IpNet>, own: &[IpNet]) -> Vec<IpNet> {
    allowed.extend(own.iter().map(IpNet::trunc));
    allowed.sort();
    allowed.dedup();
    allowed
}

/// Plans one node's data plane.
#[instrument(skip(index), fields(nodes = index.snap.nodes.len()))]
pub fn plan_node(index: &PlanIndex<'_>, node: &str) -> Result<NodePlan, PlanError> {
    let facts = index
        .node(node)
        .ok_or_else(|| PlanError::UnknownNode(node.to_string()))?;
    let site = index.site(node);
    let mut problems = Vec::new();
    let no_pools = Vec::new();
    let my_pools: &[&str] = index.pools.node_pools.get(node).unwrap_or(&no_pools);
    let assigned = site.and_then(|s| index.pools.site_pools.get(s));

    // Sites whose nodes this node routes to one by one.
    let mut direct_sites: BTreeSet<&str> = BTreeSet::new();
    if let Some(s) = site {
        direct_sites.insert(s);
        direct_sites.extend(index.site_peers.get(s).into_iter().flat_map(|p| p.keys()));
    }
    for p in my_pools {
        direct_sites.extend(index.pools.pools[p].connected.keys());
    }
    let mut peers: BTreeSet<&str> = BTreeSet::new();
    for s in &direct_sites {
        peers.extend(index.site_nodes.get(s).into_iter().flatten());
    }
    for p in assigned.into_iter().flat_map(|a| a.keys()) {
        peers.extend(&index.pools.pools[p].members);
    }
    for p in my_pools {
        let view = &index.pools.pools[p];
        peers.extend(&view.members);
        for n in view.neighbors.keys() {
            peers.extend(&index.pools.pools[n].members);
        }
    }
    peers.remove(node);

    let mut links: BTreeMap<&str, Link> = BTreeMap::new();
    for peer in peers {
        match plan_link(index, node, peer) {
            Ok(Some(link)) => {
                links.insert(peer, link);
            }
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }

    let mut routes = BTreeMap::new();
    for s in &direct_sites {
        for y in index.site_nodes.get(s).into_iter().flatten() {
            let Some(link) = links.get(y) else { continue };
            for cidr in &index.snap.nodes[*y].pod_cidrs {
                let route = Route {
                    nexthops: vec![nexthop(link)],
                    mtu: link.mtu,
                    pin: None,
                };
                insert_route(&mut routes, &mut problems, node, cidr.trunc(), route);
            }
        }
    }

    let mut dests: Vec<(Dest<'_>, &[IpNet])> = Vec::new();
    for (s, prefixes) in &index.site_prefixes {
        if !direct_sites.contains(s) {
            dests.push((Dest::Site(s), prefixes));
        }
    }
    for (p, view) in &index.pools.pools {
        if !view.routed.is_empty() && !my_pools.contains(p) {
            dests.push((Dest::Routed(p), &view.routed));
        }
    }
    for (dest, prefixes) in dests {
        // (distance, pool whose members are the nexthops)
        let mut candidates: Vec<(u32, &str)> = Vec::new();
        for p in assigned.into_iter().flat_map(|a| a.keys()) {
            if !my_pools.contains(p)
                && let Some(r) = index.pools.pools[p].reach.get(&dest)
            {
                candidates.push((r.distance, p));
            }
        }
        for p in my_pools {
            if let Some(r) = index.pools.pools[p].reach.get(&dest) {
                candidates.extend(r.via.iter().map(|v| (r.distance, *v)));
            }
        }
        let Some(best) = candidates.iter().map(|c| c.0).min() else {
            continue;
        };
        let mut hops: BTreeSet<&str> = BTreeSet::new();
        let mut mtu = u32::MAX;
        for (_, pool) in candidates.iter().filter(|c| c.0 == best) {
            mtu = mtu.min(index.path_mtu(pool, dest));
            hops.extend(index.pools.pools[pool].members.iter().copied());
        }
        hops.remove(node);
        let nexthops: Vec<NextHop> = hops
            .iter()
            .filter_map(|h| links.get(h))
            .inspect(|l| mtu = mtu.min(l.mtu))
            .map(nexthop)
            .collect();
        if nexthops.is_empty() {
            continue;
        }
        let first_pool = candidates
            .iter()
            .filter(|c| c.0 == best)
            .map(|c| c.1)
            .min()
            .expect("best exists");
        let pin = crosses_wireguard(index, &nexthops, first_pool)
            .then(|| pin_key(index, site, first_pool, dest));
        for prefix in prefixes {
            let route = Route {
                nexthops: nexthops.clone(),
                mtu,
                pin: pin.clone(),
            };
            insert_route(&mut routes, &mut problems, node, *prefix, route);
        }
    }

    let mut probes = BTreeMap::new();
    for (peer, link) in &links {
        let Some(addr) = health_address(&index.snap.nodes[*peer].pod_cidrs) else {
            continue;
        };
        let host = IpNet::from(addr);
        let direct = index.snap.nodes[*peer].pod_cidrs.iter().any(|c| {
            c.contains(&addr)
                && routes
                    .get(&c.trunc())
                    .is_some_and(|r| r.nexthops.len() == 1 && r.nexthops[0].peer == *peer)
        });
        if !direct {
            let route = Route {
                nexthops: vec![nexthop(link)],
                mtu: link.mtu,
                pin: None,
            };
            insert_route(&mut routes, &mut problems, node, host, route);
        }
        probes.insert(
            peer.to_string(),
            ProbeTarget {
                address: SocketAddr::new(addr, HEALTH_PROBE_PORT),
                enabled: link.health.enabled,
                transmit_interval: link.health.transmit_interval,
                receive_interval: link.health.receive_interval,
                multiplier: link.health.multiplier,
            },
        );
    }

    let mut allowed: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
    for (prefix, route) in &routes {
        for hop in route
            .nexthops
            .iter()
            .filter(|h| h.encap == Encap::WireGuard)
        {
            allowed.entry(hop.peer.as_str()).or_default().push(*prefix);
        }
    }
    let mut wireguard = WireGuardConfig {
        listen_port: index.settings.wireguard_port,
        peers: BTreeMap::new(),
    };
    let mut tunnels = BTreeMap::new();
    for (peer, link) in &links {
        match link.encap {
            Encap::WireGuard => {
                let Some(key) = index.snap.nodes[*peer].wg_public_key.clone() else {
                    continue;
                };
                wireguard.peers.insert(
                    peer.to_string(),
                    WireGuardPeer {
                        public_key: key,
                        endpoint: link.endpoint,
                        allowed_ips: with_own_cidrs(
                            allowed.remove(peer).unwrap_or_default(),
                            &index.snap.nodes[*peer].pod_cidrs,
                        ),
                        persistent_keepalive: link.keepalive,
                    },
                );
            }
            Encap::Geneve | Encap::Vxlan | Encap::Ipip => {
                tunnels.insert(
                    peer.to_string(),
                    TunnelPeer {
                        encap: link.encap,
                        local: link.local,
                        remote: link.remote,
                        vni: nexthop(link).vni,
                        mtu: link.mtu,
                    },
                );
            }
            Encap::None => {}
        }
    }

    let mut own: Vec<IpNet> = facts.pod_cidrs.iter().map(IpNet::trunc).collect();
    own.sort();
    own.dedup();
    let site_spec = site.and_then(|s| index.snap.sites.get(s));
    // Pods get the largest path MTU this node routes over, so no path is used below what it
    // can carry (a jumbo site keeps jumbo frames inside itself). Narrower routes are handled
    // at this node: TCP SYNs towards them get their MSS clamped to the route's MTU, anything
    // else larger than the route gets "fragmentation needed" from the route's `mtu`.
    let pod_mtu = routes
        .values()
        .map(|r| r.mtu)
        .max()
        .unwrap_or_else(|| index.underlay_mtu(node));
    let cni = CniConfig {
        manage: site_spec.and_then(|s| s.manage_cni_plugin).unwrap_or(true),
        ranges: own.clone(),
        mtu: pod_mtu,
    };
    let masquerade = MasqueradeConfig {
        source_cidrs: own,
        cluster_pod_cidrs: index.cluster_pod_cidrs.clone(),
        non_masquerade_cidrs: site
            .and_then(|s| index.non_masquerade.get(s))
            .cloned()
            .unwrap_or_default(),
        mss_clamp_cidrs: routes
            .iter()
            .filter(|(_, r)| r.mtu < pod_mtu)
            .map(|(p, _)| *p)
            .collect(),
    };
    Ok(NodePlan {
        dataplane: NodeDataplane {
            node: node.to_string(),
            wireguard,
            tunnels,
            routes,
            probes,
            masquerade,
            cni,
        },
        links: links.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        problems,
    })
}
