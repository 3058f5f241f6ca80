//! Link planning: for two nodes that must talk, which object governs their link, which
//! encapsulation it uses, over which underlay addresses, with what MTU and health settings.
//!
//! Rules:
//! - Scopes that apply to a pair: its Site (same site), the SitePeerings joining the two
//!   Sites, the SiteGatewayPoolAssignments binding one node's Site to a pool the other node is
//!   a gateway of, the GatewayPool both are gateways of, and the GatewayPoolPeerings joining
//!   pools of the two. The governing scope is the most specific one: pool peering, then pool,
//!   then assignment, then site peering, then site (ties: first by kind and name).
//! - Underlay: internal IPs within a Site, between externally peered Sites (`meshNodes:
//!   false`, whatever the governing scope), and on links of Internal pools; external IPs
//!   otherwise, falling back to internal IPs when neither node has an ExternalIP.
//! - Encapsulation: security wins — WireGuard if any applicable scope explicitly asks for it;
//!   else the explicit protocol of the most specific scope that names one (the governing
//!   scope first; an unset or Auto governing scope defers to e.g. the Site's choice); else
//!   Auto: `None` for an externally peered SitePeering, WireGuard over external IPs, GENEVE
//!   over internal IPs.
//! - MTU from [`super::mtu`], health from the governing scope.
//!
//! [`plan_link`] is symmetric: planning `a → b` and `b → a` gives the same scope, encap,
//! family and MTU, so both ends agree without talking to each other.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::dataplane::{Encap, NAT_KEEPALIVE_SECONDS};
use super::gateways::Dest;
use super::health::HealthSettings;
use super::mtu::link_mtu;
use super::plan_index::{PlanIndex, ScopeKind, ScopeSettings};
use super::plan_problem::PlanProblem;
use super::snapshot::NodeFacts;
use crate::api::TunnelProtocol;

/// An object whose settings apply to a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Site(String),
    SitePeering(String),
    /// A SiteGatewayPoolAssignment, and the pool of the gateway end.
    Assignment {
        name: String,
        pool: String,
    },
    GatewayPool(String),
    /// A GatewayPoolPeering and the two pools it joins on this link (sorted).
    PoolPeering {
        name: String,
        pools: [String; 2],
    },
}

impl Scope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Site(_) => ScopeKind::Site,
            Scope::SitePeering(_) => ScopeKind::SitePeering,
            Scope::Assignment { .. } => ScopeKind::Assignment,
            Scope::GatewayPool(_) => ScopeKind::GatewayPool,
            Scope::PoolPeering { .. } => ScopeKind::PoolPeering,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Site(n) | Scope::SitePeering(n) | Scope::GatewayPool(n) => n,
            Scope::Assignment { name, .. } | Scope::PoolPeering { name, .. } => name,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Site(n) => write!(f, "Site/{n}"),
            Scope::SitePeering(n) => write!(f, "SitePeering/{n}"),
            Scope::Assignment { name, pool } => {
                write!(f, "SiteGatewayPoolAssignment/{name} (pool {pool})")
            }
            Scope::GatewayPool(n) => write!(f, "GatewayPool/{n}"),
            Scope::PoolPeering { name, pools } => {
                write!(
                    f,
                    "GatewayPoolPeering/{name} ({} <-> {})",
                    pools[0], pools[1]
                )
            }
        }
    }
}

/// One planned link, seen from its local end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub peer: String,
    pub governing: Scope,
    /// Every applicable scope, sorted.
    pub scopes: Vec<Scope>,
    pub encap: Encap,
    /// Runs over external IPs (the public internet) rather than internal ones.
    pub external: bool,
    /// This node's underlay address.
    pub local: IpAddr,
    /// The peer's underlay address (its internal IP when it is behind NAT and unpublished).
    pub remote: IpAddr,
    /// Where to send WireGuard handshakes; `None` when the peer must dial in.
    pub endpoint: Option<SocketAddr>,
    pub keepalive: Option<u16>,
    pub mtu: u32,
    pub health: HealthSettings,
}

/// Every scope that applies to the pair, sorted; empty when the two need no link.
pub fn scopes_between(index: &PlanIndex<'_>, a: &str, b: &str) -> Vec<Scope> {
    let mut out = Vec::new();
    let (sa, sb) = (index.site(a), index.site(b));
    if let (Some(sa), Some(sb)) = (sa, sb) {
        if sa == sb {
            out.push(Scope::Site(sa.to_string()));
        } else if let Some(names) = index.site_peers.get(sa).and_then(|p| p.get(sb)) {
            out.extend(names.iter().map(|n| Scope::SitePeering(n.to_string())));
        }
    }
    let empty = Vec::new();
    let pools_a = index.pools.node_pools.get(a).unwrap_or(&empty);
    let pools_b = index.pools.node_pools.get(b).unwrap_or(&empty);
    // One end a gateway of a pool the other end's Site is assigned to.
    for (site, gateway_pools) in [(sa, pools_b), (sb, pools_a)] {
        let Some(assigned) = site.and_then(|s| index.pools.site_pools.get(s)) else {
            continue;
        };
        for pool in gateway_pools {
            for name in assigned.get(pool).into_iter().flatten() {
                out.push(Scope::Assignment {
                    name: name.to_string(),
                    pool: pool.to_string(),
                });
            }
        }
    }
    for p in pools_a {
        if pools_b.contains(p) {
            out.push(Scope::GatewayPool(p.to_string()));
        }
        for q in pools_b {
            let Some(names) = index.pools.pools[p].neighbors.get(q) else {
                continue;
            };
            let mut pair = [p.to_string(), q.to_string()];
            pair.sort();
            for name in names {
                out.push(Scope::PoolPeering {
                    name: name.to_string(),
                    pools: pair.clone(),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn rank(kind: ScopeKind) -> u8 {
    match kind {
        ScopeKind::Site => 0,
        ScopeKind::SitePeering => 1,
        ScopeKind::Assignment => 2,
        ScopeKind::GatewayPool => 3,
        ScopeKind::PoolPeering => 4,
    }
}

/// The governing scope: highest rank, first in order among equals.
pub fn governing(scopes: &[Scope]) -> Option<&Scope> {
    let top = scopes.iter().map(|s| rank(s.kind())).max()?;
    scopes.iter().find(|s| rank(s.kind()) == top)
}

fn settings<'i>(index: &'i PlanIndex<'_>, scope: &Scope) -> Option<&'i ScopeSettings> {
    index.scopes.get(&scope.kind())?.get(scope.name())
}

fn first_of(ips: &[IpAddr], v6: bool) -> Option<IpAddr> {
    ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
}

/// Behind NAT on this family: no ExternalIP, or one that is not also an InternalIP.
fn natted(node: &NodeFacts, v6: bool) -> bool {
    match first_of(&node.external_ips, v6) {
        None => true,
        Some(e) => !node.internal_ips.contains(&e),
    }
}

fn runs_internal(index: &PlanIndex<'_>, a: &NodeFacts, b: &NodeFacts, governing: &Scope) -> bool {
    if let (Some(sa), Some(sb)) = (index.site(&a.name), index.site(&b.name))
        && (sa == sb || index.externally_peered(sa, sb))
    {
        return true;
    }
    let pool_internal = |p: &str| index.pools.pools.get(p).is_some_and(|v| v.is_internal());
    let internal = match governing {
        Scope::Site(_) => true,
        Scope::SitePeering(_) => false,
        Scope::Assignment { pool, .. } | Scope::GatewayPool(pool) => pool_internal(pool),
        Scope::PoolPeering { pools, .. } => pools.iter().all(|p| pool_internal(p)),
    };
    internal || (a.external_ips.is_empty() && b.external_ips.is_empty())
}

/// Plans the link from `a` to `b`. `Ok(None)`: the two need no link.
pub fn plan_link(index: &PlanIndex<'_>, a: &str, b: &str) -> Result<Option<Link>, PlanProblem> {
    let (Some(na), Some(nb)) = (index.node(a), index.node(b)) else {
        return Ok(None);
    };
    if a == b {
        return Ok(None);
    }
    let scopes = scopes_between(index, a, b);
    let Some(gov) = governing(&scopes).cloned() else {
        return Ok(None);
    };
    let no_path = |reason| PlanProblem::NoUnderlayPath {
        node: a.to_string(),
        peer: b.to_string(),
        reason,
    };
    let internal = runs_internal(index, na, nb, &gov);
    let port = index.settings.wireguard_port;
    let (v6, local, remote, endpoint) = if internal {
        [false, true]
            .into_iter()
            .find_map(|v6| {
                let l = first_of(&na.internal_ips, v6)?;
                let r = first_of(&nb.internal_ips, v6)?;
                Some((v6, l, r, Some(SocketAddr::new(r, port))))
            })
            .ok_or_else(|| no_path("the nodes share no address family on their InternalIPs"))?
    } else {
        [false, true]
            .into_iter()
            .find_map(|v6| {
                let a_ext = first_of(&na.external_ips, v6);
                let b_ext = first_of(&nb.external_ips, v6);
                let l = first_of(&na.internal_ips, v6).or(a_ext)?;
                let b_int = first_of(&nb.internal_ips, v6);
                let r = b_ext.or(b_int)?;
                // Someone must be dialable on this family.
                (a_ext.is_some() || b_ext.is_some()).then_some((
                    v6,
                    l,
                    r,
                    b_ext.map(|e| SocketAddr::new(e, port)),
                ))
            })
            .ok_or_else(|| {
                no_path(
                    "no address family where one node has an ExternalIP and both have an address",
                )
            })?
    };

    let explicit = |s: &Scope| {
        settings(index, s)
            .and_then(|x| x.protocol)
            .filter(|p| *p != TunnelProtocol::Auto)
    };
    let gov_settings = settings(index, &gov).copied();
    // Security wins; otherwise the most specific scope that names a protocol decides.
    let named = if scopes
        .iter()
        .any(|s| explicit(s) == Some(TunnelProtocol::WireGuard))
    {
        Some(TunnelProtocol::WireGuard)
    } else {
        let mut by_rank: Vec<&Scope> = scopes.iter().collect();
        by_rank.sort_by_key(|s| std::cmp::Reverse(rank(s.kind())));
        by_rank.into_iter().find_map(explicit)
    };
    let encap = match named {
        Some(TunnelProtocol::WireGuard) => Encap::WireGuard,
        Some(TunnelProtocol::Geneve) => Encap::Geneve,
        Some(TunnelProtocol::Vxlan) => Encap::Vxlan,
        Some(TunnelProtocol::Ipip) => Encap::Ipip,
        Some(TunnelProtocol::None) => Encap::None,
        Some(TunnelProtocol::Auto) | None => match &gov {
            Scope::SitePeering(n) if index.snap.site_peerings[n].mesh_nodes == Some(false) => {
                Encap::None
            }
            _ if internal => Encap::Geneve,
            _ => Encap::WireGuard,
        },
    };
    if encap == Encap::WireGuard && nb.wg_public_key.is_none() {
        return Err(PlanProblem::PeerWithoutKey {
            node: a.to_string(),
            peer: b.to_string(),
        });
    }
    let keepalive = (encap == Encap::WireGuard && !internal && (natted(na, v6) || natted(nb, v6)))
        .then_some(NAT_KEEPALIVE_SECONDS);
    // Both ends' underlays carry the encapsulated packet: the smaller one bounds the link.
    let mtu = link_mtu(
        encap,
        v6,
        index.underlay_mtu(a).min(index.underlay_mtu(b)),
        gov_settings.and_then(|s| s.tunnel_mtu),
    );
    Ok(Some(Link {
        peer: b.to_string(),
        governing: gov,
        scopes,
        encap,
        external: !internal,
        local,
        remote,
        endpoint,
        keepalive,
        mtu,
        health: gov_settings.map(|s| s.health).unwrap_or_default(),
    }))
}

/// Smallest link MTU between the two sets, one link per pair of signature groups (any two
/// distinct nodes of the groups stand for all of them).
fn min_link_mtu(index: &PlanIndex<'_>, from: &[Vec<&str>], to: &[Vec<&str>]) -> u32 {
    let mut best = u32::MAX;
    for fg in from {
        for tg in to {
            let pair = fg
                .iter()
                .flat_map(|g| tg.iter().map(move |y| (*g, *y)))
                .find(|(g, y)| g != y);
            if let Some((g, y)) = pair
                && let Ok(Some(link)) = plan_link(index, g, y)
            {
                best = best.min(link.mtu);
            }
        }
    }
    best
}

/// What a link's MTU can depend on, for the far end: its Site, its pools, which address
/// families it has internal/external addresses in, whether it has a key, and its underlay MTU.
type Signature<'a> = (Option<&'a str>, u8, Vec<&'a str>, u32);

fn signature<'a>(index: &PlanIndex<'a>, name: &'a str) -> Signature<'a> {
    let node = &index.snap.nodes[name];
    let has = |ips: &[IpAddr], v6: bool| ips.iter().any(|ip| ip.is_ipv6() == v6);
    let bits = u8::from(has(&node.internal_ips, false))
        | u8::from(has(&node.internal_ips, true)) << 1
        | u8::from(has(&node.external_ips, false)) << 2
        | u8::from(has(&node.external_ips, true)) << 3
        | u8::from(node.wg_public_key.is_some()) << 4;
    let pools = index
        .pools
        .node_pools
        .get(name)
        .cloned()
        .unwrap_or_default();
    (index.site(name), bits, pools, index.underlay_mtu(name))
}

/// Nodes grouped by signature, at most two kept per group: links to any of them have the
/// same MTU (two, so a node meeting its own group still finds a distinct peer).
fn representatives<'a>(index: &PlanIndex<'a>, nodes: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut by_sig: BTreeMap<Signature<'a>, Vec<&'a str>> = BTreeMap::new();
    for &n in nodes {
        let reps = by_sig.entry(signature(index, n)).or_default();
        if reps.len() < 2 {
            reps.push(n);
        }
    }
    by_sig.into_values().collect()
}

/// Path MTUs, measured on first use and kept for the life of the index: an agent planning
/// itself measures only the paths it routes over; a shell planning every node measures each
/// path once.
#[derive(Debug, Default)]
pub struct PathMtuCache<'a> {
    paths: Mutex<BTreeMap<(&'a str, Dest<'a>), u32>>,
    hops: Mutex<BTreeMap<(&'a str, &'a str), u32>>,
    pool_groups: Mutex<BTreeMap<&'a str, Arc<Vec<Vec<&'a str>>>>>,
    site_groups: Mutex<BTreeMap<&'a str, Arc<Vec<Vec<&'a str>>>>>,
}

impl Clone for PathMtuCache<'_> {
    /// A clone starts empty; it refills from the same index on demand.
    fn clone(&self) -> Self {
        PathMtuCache::default()
    }
}

/// A poisoned cache only means another thread panicked mid-insert; the map is still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn groups<'a>(
    index: &PlanIndex<'a>,
    cache: &Mutex<BTreeMap<&'a str, Arc<Vec<Vec<&'a str>>>>>,
    key: &'a str,
    nodes: &[&'a str],
) -> Arc<Vec<Vec<&'a str>>> {
    if let Some(g) = lock(cache).get(key) {
        return Arc::clone(g);
    }
    let g = Arc::new(representatives(index, nodes));
    lock(cache).insert(key, Arc::clone(&g));
    g
}

impl<'a> PlanIndex<'a> {
    /// Smallest MTU from `pool`'s gateways to `dest`: the final hop to the destination Site's
    /// nodes and every gateway-to-gateway hop on the shortest pool paths. `u32::MAX` when the
    /// pool does not reach `dest` or no link exists to measure.
    pub fn path_mtu(&self, pool: &'a str, dest: Dest<'a>) -> u32 {
        if let Some(m) = lock(&self.mtu_cache.paths).get(&(pool, dest)) {
            return *m;
        }
        let Some(reach) = self.pools.pools.get(pool).and_then(|v| v.reach.get(&dest)) else {
            return u32::MAX;
        };
        let cache = &self.mtu_cache;
        let mtu = if reach.distance == 0 {
            match dest {
                Dest::Site(site) => {
                    let from = groups(
                        self,
                        &cache.pool_groups,
                        pool,
                        &self.pools.pools[pool].members,
                    );
                    let to = groups(
                        self,
                        &cache.site_groups,
                        site,
                        self.site_nodes.get(site).map(Vec::as_slice).unwrap_or(&[]),
                    );
                    min_link_mtu(self, &from, &to)
                }
                Dest::Routed(_) => u32::MAX,
            }
        } else {
            let mut best = u32::MAX;
            // Each `via` is one hop closer, so the recursion ends at distance 0.
            for &via in &reach.via {
                let known = lock(&cache.hops).get(&(pool, via)).copied();
                let hop = known.unwrap_or_else(|| {
                    let from = groups(
                        self,
                        &cache.pool_groups,
                        pool,
                        &self.pools.pools[pool].members,
                    );
                    let to = groups(
                        self,
                        &cache.pool_groups,
                        via,
                        &self.pools.pools[via].members,
                    );
                    let m = min_link_mtu(self, &from, &to);
                    lock(&cache.hops).insert((pool, via), m);
                    m
                });
                best = best.min(hop).min(self.path_mtu(via, dest));
            }
            best
        };
        lock(&cache.paths).insert((pool, dest), mtu);
        mtu
    }
}
