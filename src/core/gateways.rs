//! Gateway pools: who is a member, which sites each pool serves (SiteGatewayPoolAssignments)
//! and which it can reach over GatewayPoolPeerings, hop by hop.
//!
//! Reachability only follows pool peerings: a Site is reachable through a pool when it is
//! connected (by an assignment) to that pool or to a pool a shortest chain of peerings away.
//! SitePeerings connect their sites' nodes directly (see [`super::links`]) and are not
//! transit through gateways.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ipnet::IpNet;

use super::plan_problem::PlanProblem;
use super::snapshot::Snapshot;
use crate::api::{GatewayPoolSpec, GatewayPoolType};

/// Something a pool can route to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest<'a> {
    /// The pod prefixes of a Site.
    Site(&'a str),
    /// The `routedCidrs` of a GatewayPool.
    Routed(&'a str),
}

/// How a pool reaches a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach<'a> {
    /// Pool hops: 0 when the destination is connected to the pool itself.
    pub distance: u32,
    /// Neighbouring pools one hop closer (all of them: traffic is spread across them).
    pub via: Vec<&'a str>,
}

/// One pool as the planner sees it.
#[derive(Clone, Debug)]
pub struct PoolView<'a> {
    pub spec: &'a GatewayPoolSpec,
    /// Member nodes, sorted by name.
    pub members: Vec<&'a str>,
    /// Sites bound to the pool, with the assignments that bind them (sorted).
    pub connected: BTreeMap<&'a str, Vec<&'a str>>,
    /// Peered pools, with the peerings that join them (sorted).
    pub neighbors: BTreeMap<&'a str, Vec<&'a str>>,
    /// Parsed `routedCidrs`.
    pub routed: Vec<IpNet>,
    pub reach: BTreeMap<Dest<'a>, Reach<'a>>,
}

impl PoolView<'_> {
    pub fn is_internal(&self) -> bool {
        self.spec.pool_type == GatewayPoolType::Internal
    }
}

/// Every pool, plus the reverse indexes planning needs.
#[derive(Clone, Debug, Default)]
pub struct GatewayPools<'a> {
    pub pools: BTreeMap<&'a str, PoolView<'a>>,
    /// Node → pools it is a member of.
    pub node_pools: BTreeMap<&'a str, Vec<&'a str>>,
    /// Site → pool → assignments binding them.
    pub site_pools: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a str>>>,
}

/// Nodes carrying every label of the selector. An empty selector selects nobody: making
/// every node of a 10,000-node cluster a gateway is never what was meant.
fn select_members<'a>(
    snap: &'a Snapshot,
    label_index: &BTreeMap<(&'a str, &'a str), Vec<&'a str>>,
    name: &str,
    spec: &'a GatewayPoolSpec,
    problems: &mut Vec<PlanProblem>,
) -> Vec<&'a str> {
    let Some((k, v)) = spec.node_selector.iter().next() else {
        problems.push(PlanProblem::EmptySelector {
            pool: name.to_string(),
        });
        return Vec::new();
    };
    let candidates = label_index
        .get(&(k.as_str(), v.as_str()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut members = Vec::new();
    for &node_name in candidates {
        let node = &snap.nodes[node_name];
        if !spec
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
        {
            continue;
        }
        if node.wg_public_key.is_none() {
            problems.push(PlanProblem::GatewayWithoutKey {
                pool: name.to_string(),
                node: node_name.to_string(),
            });
            continue;
        }
        if spec.pool_type == GatewayPoolType::External && node.external_ips.is_empty() {
            problems.push(PlanProblem::GatewayWithoutExternalIp {
                pool: name.to_string(),
                node: node_name.to_string(),
            });
            continue;
        }
        members.push(node_name);
    }
    members
}

/// Known names from a list, deduplicated, unknown ones reported.
fn known<'a, V>(
    names: &'a [String],
    table: &BTreeMap<String, V>,
    problem: impl Fn(&str) -> PlanProblem,
    problems: &mut Vec<PlanProblem>,
) -> Vec<&'a str> {
    let mut out = BTreeSet::new();
    for n in names {
        if table.contains_key(n) {
            out.insert(n.as_str());
        } else {
            problems.push(problem(n));
        }
    }
    out.into_iter().collect()
}

impl<'a> GatewayPools<'a> {
    /// Builds membership, connections and reachability; unknown references become problems.
    pub fn build(snap: &'a Snapshot, problems: &mut Vec<PlanProblem>) -> Self {
        // Inverted label index over the keys some selector uses, so membership costs
        // O(candidates) per pool rather than O(nodes).
        let keys: BTreeSet<&str> = snap
            .gateway_pools
            .values()
            .flat_map(|p| p.node_selector.keys().map(String::as_str))
            .collect();
        let mut label_index: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for (name, node) in &snap.nodes {
            for (k, v) in &node.labels {
                if keys.contains(k.as_str()) {
                    label_index
                        .entry((k.as_str(), v.as_str()))
                        .or_default()
                        .push(name.as_str());
                }
            }
        }

        let mut out = GatewayPools::default();
        for (name, spec) in &snap.gateway_pools {
            let members = select_members(snap, &label_index, name, spec, problems);
            for &m in &members {
                out.node_pools.entry(m).or_default().push(name.as_str());
            }
            let mut routed = Vec::new();
            for value in &spec.routed_cidrs {
                match value.parse::<IpNet>() {
                    Ok(net) => routed.push(net.trunc()),
                    Err(_) => problems.push(PlanProblem::BadCidr {
                        object: format!("GatewayPool/{name}"),
                        field: "routedCidrs",
                        value: value.clone(),
                    }),
                }
            }
            routed.sort();
            routed.dedup();
            out.pools.insert(
                name.as_str(),
                PoolView {
                    spec,
                    members,
                    connected: BTreeMap::new(),
                    neighbors: BTreeMap::new(),
                    routed,
                    reach: BTreeMap::new(),
                },
            );
        }

        for (name, sgpa) in &snap.assignments {
            let object = format!("SiteGatewayPoolAssignment/{name}");
            let sites = known(
                &sgpa.sites,
                &snap.sites,
                |s| PlanProblem::UnknownSite {
                    object: object.clone(),
                    site: s.to_string(),
                },
                problems,
            );
            let pools = known(
                &sgpa.gateway_pools,
                &snap.gateway_pools,
                |p| PlanProblem::UnknownPool {
                    object: object.clone(),
                    pool: p.to_string(),
                },
                problems,
            );
            for &site in &sites {
                for &pool in &pools {
                    let by_pool = out.site_pools.entry(site).or_default();
                    by_pool.entry(pool).or_default().push(name.as_str());
                    if let Some(view) = out.pools.get_mut(pool) {
                        view.connected.entry(site).or_default().push(name.as_str());
                    }
                }
            }
        }

        for (name, gpp) in &snap.pool_peerings {
            let object = format!("GatewayPoolPeering/{name}");
            let pools = known(
                &gpp.gateway_pools,
                &snap.gateway_pools,
                |p| PlanProblem::UnknownPool {
                    object: object.clone(),
                    pool: p.to_string(),
                },
                problems,
            );
            if pools.len() < 2 {
                problems.push(PlanProblem::TooFewMembers {
                    object,
                    what: "gateway pools",
                });
                continue;
            }
            for &a in &pools {
                for &b in &pools {
                    if a != b
                        && let Some(view) = out.pools.get_mut(a)
                    {
                        view.neighbors.entry(b).or_default().push(name.as_str());
                    }
                }
            }
        }

        out.compute_reach(snap);
        out
    }

    /// Multi-source BFS per destination over the graph of pools that have members, on
    /// integer ids (a 100-pool full mesh is 100 BFS runs over ~10,000 edges each).
    fn compute_reach(&mut self, snap: &'a Snapshot) {
        let names: Vec<&'a str> = self.pools.keys().copied().collect();
        let id: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let active: Vec<bool> = self.pools.values().map(|v| !v.members.is_empty()).collect();
        let adj: Vec<Vec<usize>> = self
            .pools
            .values()
            .map(|v| {
                v.neighbors
                    .keys()
                    .filter_map(|n| id.get(n).copied())
                    .filter(|&n| active[n])
                    .collect()
            })
            .collect();
        let mut sources_of_site: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, view) in self.pools.values().enumerate() {
            if active[i] {
                for site in view.connected.keys() {
                    sources_of_site.entry(site).or_default().push(i);
                }
            }
        }
        let mut dests: Vec<(Dest<'a>, Vec<usize>)> = Vec::new();
        for site in snap.sites.keys() {
            let sources = sources_of_site.remove(site.as_str()).unwrap_or_default();
            dests.push((Dest::Site(site.as_str()), sources));
        }
        for (i, view) in self.pools.values().enumerate() {
            if active[i] && !view.routed.is_empty() {
                dests.push((Dest::Routed(names[i]), vec![i]));
            }
        }
        let mut reaches: Vec<Vec<(Dest<'a>, Reach<'a>)>> = vec![Vec::new(); names.len()];
        let mut dist = vec![u32::MAX; names.len()];
        let mut queue = VecDeque::new();
        for (dest, sources) in dests {
            dist.fill(u32::MAX);
            for s in sources {
                dist[s] = 0;
                queue.push_back(s);
            }
            while let Some(p) = queue.pop_front() {
                for &n in &adj[p] {
                    if dist[n] == u32::MAX {
                        dist[n] = dist[p] + 1;
                        queue.push_back(n);
                    }
                }
            }
            for (p, &d) in dist.iter().enumerate() {
                if d == u32::MAX {
                    continue;
                }
                let via = adj[p]
                    .iter()
                    .filter(|&&n| d > 0 && dist[n] == d - 1)
                    .map(|&n| names[n])
                    .collect();
                reaches[p].push((dest, Reach { distance: d, via }));
            }
        }
        for (view, reach) in self.pools.values_mut().zip(reaches) {
            view.reach = reach.into_iter().collect();
        }
    }
}

/// The status the controller writes on a GatewayPool (conditions are left to the controller:
/// they carry timestamps). Agents read the members from it. `None` for an unknown pool.
pub fn pool_status(
    index: &super::plan_index::PlanIndex<'_>,
    pool: &str,
) -> Option<crate::api::GatewayPoolStatus> {
    use crate::api::{GatewayNodeStatus, GatewayPoolStatus, ReachableSite};

    let view = index.pools.pools.get(pool)?;
    let strings = |ips: &[std::net::IpAddr]| ips.iter().map(|ip| ip.to_string()).collect();
    let nodes: Vec<GatewayNodeStatus> = view
        .members
        .iter()
        .map(|&name| {
            let node = &index.snap.nodes[name];
            GatewayNodeStatus {
                name: name.to_string(),
                site_name: index.site(name).unwrap_or_default().to_string(),
                internal_ips: strings(&node.internal_ips),
                external_ips: strings(&node.external_ips),
                wire_guard_public_key: node.wg_public_key.clone().unwrap_or_default(),
                wire_guard_port: index.settings.wireguard_port,
                health_endpoints: super::node_plan::health_address(&node.pod_cidrs)
                    .map(|a| {
                        std::net::SocketAddr::new(a, super::dataplane::HEALTH_PROBE_PORT)
                            .to_string()
                    })
                    .into_iter()
                    .collect(),
                pod_cidrs: node.pod_cidrs.iter().map(|c| c.to_string()).collect(),
            }
        })
        .collect();
    let reachable_sites = view
        .reach
        .iter()
        .filter_map(|(dest, reach)| match dest {
            Dest::Site(site) => Some(ReachableSite {
                name: site.to_string(),
                path_length: reach.distance,
                via: reach.via.first().map(|v| v.to_string()),
            }),
            Dest::Routed(_) => None,
        })
        .collect();
    Some(GatewayPoolStatus {
        node_count: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        nodes,
        connected_sites: view.connected.keys().map(|s| s.to_string()).collect(),
        reachable_sites,
        conditions: Vec::new(),
    })
}
