//! Everything per-node planning looks up, indexed once per snapshot and shared by every node's
//! plan (a 10,000-node cluster is indexed once, not 10,000 times).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::gateways::GatewayPools;
use super::health::{HealthSettings, resolve_health};
use super::links::PathMtuCache;
use super::mtu::{DEFAULT_UNDERLAY_MTU, MAX_TUNNEL_MTU, MIN_TUNNEL_MTU};
use super::plan_problem::PlanProblem;
use super::site::assign_sites;
use super::snapshot::{NodeFacts, Snapshot};
use crate::api::{HealthCheckSettings, TunnelProtocol};

use super::dataplane::DEFAULT_WIREGUARD_PORT;

/// Cluster-wide inputs that are not in any object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanSettings {
    /// Underlay MTU assumed for a node that has published none of its own (see
    /// [`crate::core::mtu`]); a node's published MTU always wins.
    pub underlay_mtu: u32,
    /// WireGuard listen port of every node.
    pub wireguard_port: u16,
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            underlay_mtu: DEFAULT_UNDERLAY_MTU,
            wireguard_port: DEFAULT_WIREGUARD_PORT,
        }
    }
}

/// Kinds of object that carry tunnel settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScopeKind {
    Site,
    SitePeering,
    Assignment,
    GatewayPool,
    PoolPeering,
}

/// Tunnel settings of one object, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeSettings {
    /// `None` and `Some(Auto)` both mean Auto.
    pub protocol: Option<TunnelProtocol>,
    pub tunnel_mtu: Option<u32>,
    pub health: HealthSettings,
}

/// The per-snapshot index.
#[derive(Clone, Debug)]
pub struct PlanIndex<'a> {
    pub snap: &'a Snapshot,
    pub settings: PlanSettings,
    /// Node → Site (only Sites that exist).
    pub site_of: BTreeMap<&'a str, &'a str>,
    /// Site → its nodes, sorted.
    pub site_nodes: BTreeMap<&'a str, Vec<&'a str>>,
    /// Site → peered Site → SitePeerings joining them.
    pub site_peers: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a str>>>,
    /// Site → prefixes routed to it as a whole: its pod pools, plus any node pod CIDR outside
    /// them (sorted).
    pub site_prefixes: BTreeMap<&'a str, Vec<IpNet>>,
    /// Every Site's pod prefixes (sorted): pod-to-pod traffic is never masqueraded.
    pub cluster_pod_cidrs: Vec<IpNet>,
    /// Site → parsed `nonMasqueradeCIDRs`.
    pub non_masquerade: BTreeMap<&'a str, Vec<IpNet>>,
    pub scopes: BTreeMap<ScopeKind, BTreeMap<&'a str, ScopeSettings>>,
    pub pools: GatewayPools<'a>,
    /// Path MTUs measured so far (see [`PlanIndex::path_mtu`]).
    pub mtu_cache: PathMtuCache<'a>,
    pub problems: Vec<PlanProblem>,
}

fn parse_cidrs(
    values: &[String],
    object: &str,
    field: &'static str,
    problems: &mut Vec<PlanProblem>,
) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = values
        .iter()
        .filter_map(|v| match v.parse::<IpNet>() {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                problems.push(PlanProblem::BadCidr {
                    object: object.to_string(),
                    field,
                    value: v.clone(),
                });
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn scope_settings(
    object: String,
    protocol: Option<TunnelProtocol>,
    tunnel_mtu: Option<u32>,
    health: Option<&HealthCheckSettings>,
    problems: &mut Vec<PlanProblem>,
) -> ScopeSettings {
    let (health, errors) = resolve_health(health);
    for error in errors {
        problems.push(PlanProblem::BadHealthSettings {
            object: object.clone(),
            error,
        });
    }
    let tunnel_mtu = match tunnel_mtu {
        Some(m) if !(MIN_TUNNEL_MTU..=MAX_TUNNEL_MTU).contains(&m) => {
            problems.push(PlanProblem::TunnelMtuOutOfRange { object, value: m });
            None
        }
        other => other,
    };
    ScopeSettings {
        protocol,
        tunnel_mtu,
        health,
    }
}

impl<'a> PlanIndex<'a> {
    /// Indexes a snapshot, placing each node by [`assign_sites`] (its InternalIPs against the
    /// Sites' `nodeCidrs`); nodes in conflict or matching no Site belong to no Site.
    pub fn new(snap: &'a Snapshot, settings: PlanSettings) -> Self {
        let assignment = assign_sites(snap);
        let sites: BTreeMap<&str, &str> = assignment
            .nodes
            .iter()
            .filter_map(|(n, m)| Some((n.as_str(), m.site()?)))
            .collect();
        Self::with_sites(snap, settings, &sites)
    }

    /// Indexes a snapshot with the node → Site assignment the controller computed. Nodes
    /// missing from it, or assigned to a Site that does not exist, belong to no Site.
    pub fn with_sites<S: AsRef<str>>(
        snap: &'a Snapshot,
        settings: PlanSettings,
        assignment: &BTreeMap<&str, S>,
    ) -> Self {
        let mut problems = Vec::new();
        let mut site_of = BTreeMap::new();
        let mut site_nodes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for name in snap.nodes.keys() {
            let site = assignment
                .get(name.as_str())
                .and_then(|s| snap.sites.get_key_value(s.as_ref()));
            match site {
                Some((site, _)) => {
                    site_of.insert(name.as_str(), site.as_str());
                    site_nodes
                        .entry(site.as_str())
                        .or_default()
                        .push(name.as_str());
                }
                None => problems.push(PlanProblem::NodeWithoutSite { node: name.clone() }),
            }
        }

        let mut scopes: BTreeMap<ScopeKind, BTreeMap<&str, ScopeSettings>> = BTreeMap::new();
        let mut site_prefixes = BTreeMap::new();
        let mut non_masquerade = BTreeMap::new();
        let mut cluster: BTreeSet<IpNet> = BTreeSet::new();
        for (name, site) in &snap.sites {
            let object = format!("Site/{name}");
            let blocks: Vec<String> = site
                .pod_cidr_assignments
                .iter()
                .flat_map(|a| a.cidr_blocks.iter().cloned())
                .collect();
            let mut prefixes = parse_cidrs(&blocks, &object, "cidrBlocks", &mut problems);
            let covered = prefixes.clone();
            for node in site_nodes.get(name.as_str()).into_iter().flatten() {
                for cidr in &snap.nodes[*node].pod_cidrs {
                    if !covered.iter().any(|p| p.contains(cidr)) {
                        prefixes.push(cidr.trunc());
                    }
                }
            }
            prefixes.sort();
            prefixes.dedup();
            cluster.extend(prefixes.iter().copied());
            site_prefixes.insert(name.as_str(), prefixes);
            non_masquerade.insert(
                name.as_str(),
                parse_cidrs(
                    &site.non_masquerade_cidrs,
                    &object,
                    "nonMasqueradeCIDRs",
                    &mut problems,
                ),
            );
            let s = scope_settings(
                object,
                site.tunnel_protocol,
                site.tunnel_mtu,
                site.health_check_settings.as_ref(),
                &mut problems,
            );
            scopes
                .entry(ScopeKind::Site)
                .or_default()
                .insert(name.as_str(), s);
        }

        let mut site_peers: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (name, peering) in &snap.site_peerings {
            let object = format!("SitePeering/{name}");
            let mut sites = BTreeSet::new();
            for s in &peering.sites {
                match snap.sites.get_key_value(s) {
                    Some((k, _)) => {
                        sites.insert(k.as_str());
                    }
                    None => problems.push(PlanProblem::UnknownSite {
                        object: object.clone(),
                        site: s.clone(),
                    }),
                }
            }
            if sites.len() < 2 {
                problems.push(PlanProblem::TooFewMembers {
                    object: object.clone(),
                    what: "sites",
                });
            }
            for &a in &sites {
                for &b in &sites {
                    if a != b {
                        let peers = site_peers.entry(a).or_default();
                        peers.entry(b).or_default().push(name.as_str());
                    }
                }
            }
            let s = scope_settings(
                object,
                peering.tunnel_protocol,
                peering.tunnel_mtu,
                peering.health_check_settings.as_ref(),
                &mut problems,
            );
            scopes
                .entry(ScopeKind::SitePeering)
                .or_default()
                .insert(name.as_str(), s);
        }
        for (name, a) in &snap.assignments {
            let s = scope_settings(
                format!("SiteGatewayPoolAssignment/{name}"),
                a.tunnel_protocol,
                a.tunnel_mtu,
                a.health_check_settings.as_ref(),
                &mut problems,
            );
            scopes
                .entry(ScopeKind::Assignment)
                .or_default()
                .insert(name.as_str(), s);
        }
        for (name, p) in &snap.gateway_pools {
            let s = scope_settings(
                format!("GatewayPool/{name}"),
                p.tunnel_protocol,
                p.tunnel_mtu,
                p.health_check_settings.as_ref(),
                &mut problems,
            );
            scopes
                .entry(ScopeKind::GatewayPool)
                .or_default()
                .insert(name.as_str(), s);
        }
        for (name, p) in &snap.pool_peerings {
            let s = scope_settings(
                format!("GatewayPoolPeering/{name}"),
                p.tunnel_protocol,
                p.tunnel_mtu,
                p.health_check_settings.as_ref(),
                &mut problems,
            );
            scopes
                .entry(ScopeKind::PoolPeering)
                .or_default()
                .insert(name.as_str(), s);
        }

        let pools = GatewayPools::build(snap, &mut problems);
        for pool in pools.pools.values() {
            cluster.extend(pool.routed.iter().copied());
        }
        PlanIndex {
            snap,
            settings,
            site_of,
            site_nodes,
            site_peers,
            site_prefixes,
            cluster_pod_cidrs: cluster.into_iter().collect(),
            non_masquerade,
            scopes,
            pools,
            mtu_cache: PathMtuCache::default(),
            problems,
        }
    }

    pub fn node(&self, name: &str) -> Option<&'a NodeFacts> {
        self.snap.nodes.get(name)
    }

    /// A node's underlay MTU: what it published, else the cluster default.
    pub fn underlay_mtu(&self, node: &str) -> u32 {
        self.node(node)
            .and_then(|n| n.underlay_mtu)
            .unwrap_or(self.settings.underlay_mtu)
    }

    pub fn site(&self, node: &str) -> Option<&'a str> {
        self.site_of.get(node).copied()
    }

    /// Whether two Sites are joined by a SitePeering with `meshNodes: false` (existing L3).
    pub fn externally_peered(&self, a: &str, b: &str) -> bool {
        self.site_peers
            .get(a)
            .and_then(|p| p.get(b))
            .is_some_and(|names| {
                names
                    .iter()
                    .any(|n| self.snap.site_peerings[*n].mesh_nodes == Some(false))
            })
    }

    /// Problems found while indexing (unknown references, bad fields, pool membership).
    pub fn problems(&self) -> &[PlanProblem] {
        &self.problems
    }
}
