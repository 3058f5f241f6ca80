//! Site assignment: which Site a node belongs to, by its InternalIPs.
//!
//! A node belongs to the Site whose `nodeCidrs` contain one of its InternalIPs; the most
//! specific prefix wins. Ambiguity is never settled by list order: two Sites claiming the same
//! prefix, or a node whose IPs point at different Sites, is a [`SiteMatch::Conflict`], and any
//! overlap between the `nodeCidrs` of different Sites is reported as a [`SiteOverlap`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::Snapshot;
use crate::api::SiteSpec;

/// Where one node belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteMatch {
    /// Exactly one Site wins; `prefix` is the most specific `nodeCidr` that matched.
    Assigned { site: String, prefix: IpNet },
    /// Several Sites claim the node with equal specificity, or its InternalIPs point at
    /// different Sites. The node is left unassigned until the Sites are fixed.
    Conflict { sites: Vec<String> },
    /// No Site's `nodeCidrs` contains any InternalIP of the node (or it has none).
    Unmatched,
}

impl SiteMatch {
    /// The Site name when assigned.
    pub fn site(&self) -> Option<&str> {
        match self {
            SiteMatch::Assigned { site, .. } => Some(site),
            _ => None,
        }
    }
}

/// `nodeCidrs` of two different Sites overlap (identical, or one inside the other). Nested
/// prefixes still resolve by specificity; identical ones make ties for the nodes inside.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SiteOverlap {
    pub site_a: String,
    pub cidr_a: IpNet,
    pub site_b: String,
    pub cidr_b: IpNet,
}

impl SiteOverlap {
    /// Human-readable, for condition messages and Events.
    pub fn message(&self) -> String {
        if self.cidr_a == self.cidr_b {
            format!(
                "Sites {} and {} both claim nodeCidr {}; nodes inside it are not assigned",
                self.site_a, self.site_b, self.cidr_a
            )
        } else {
            format!(
                "nodeCidr {} of Site {} overlaps nodeCidr {} of Site {}; the more specific prefix wins",
                self.cidr_a, self.site_a, self.cidr_b, self.site_b
            )
        }
    }
}

/// A `nodeCidrs` entry that is not a CIDR; the Site is used with its other entries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("Site {site}: nodeCidrs entry {value:?} is not a CIDR (write it like 10.1.0.0/16)")]
pub struct InvalidNodeCidr {
    pub site: String,
    pub value: String,
}

/// The outcome of site assignment for a whole snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteAssignment {
    /// Every node of the snapshot, by name.
    pub nodes: BTreeMap<String, SiteMatch>,
    /// Overlapping `nodeCidrs` between different Sites, sorted.
    pub overlaps: Vec<SiteOverlap>,
    /// Unparseable `nodeCidrs` entries, sorted.
    pub invalid: Vec<InvalidNodeCidr>,
}

impl SiteAssignment {
    /// Names of the nodes assigned to `site`, sorted.
    pub fn nodes_of<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.nodes
            .iter()
            .filter(move |(_, m)| m.site() == Some(site))
            .map(|(n, _)| n.as_str())
    }
}

/// Longest-prefix lookup of node IPs against every Site's `nodeCidrs`: one hash probe per
/// distinct prefix length, independent of the number of Sites.
#[derive(Clone, Debug, Default)]
pub struct SiteIndex {
    /// Per prefix length (longest first): network → Sites claiming exactly that prefix.
    by_len: Vec<(u8, HashMap<IpNet, BTreeSet<String>>)>,
    overlaps: Vec<SiteOverlap>,
    invalid: Vec<InvalidNodeCidr>,
}

impl SiteIndex {
    /// Indexes the `nodeCidrs` of all Sites (host bits are ignored: 10.1.2.3/16 = 10.1.0.0/16).
    pub fn new(sites: &BTreeMap<String, SiteSpec>) -> Self {
        let mut by_len: BTreeMap<u8, HashMap<IpNet, BTreeSet<String>>> = BTreeMap::new();
        let mut invalid = Vec::new();
        let mut all: BTreeSet<(IpNet, String)> = BTreeSet::new();
        for (name, spec) in sites {
            for raw in &spec.node_cidrs {
                match raw.trim().parse::<IpNet>() {
                    Ok(net) => {
                        let net = net.trunc();
                        all.insert((net, name.clone()));
                        by_len
                            .entry(net.prefix_len())
                            .or_default()
                            .entry(net)
                            .or_default()
                            .insert(name.clone());
                    }
                    Err(_) => invalid.push(InvalidNodeCidr {
                        site: name.clone(),
                        value: raw.clone(),
                    }),
                }
            }
        }
        invalid.sort();
        SiteIndex {
            by_len: by_len.into_iter().rev().collect(),
            overlaps: find_overlaps(&all),
            invalid,
        }
    }

    /// The Sites claiming `ip` with their most specific prefix, and that prefix.
    fn lookup(&self, ip: IpAddr) -> Option<(IpNet, &BTreeSet<String>)> {
        for (len, nets) in &self.by_len {
            let Ok(net) = IpNet::new(ip, *len) else {
                continue; // a prefix of the other family
            };
            if let Some(sites) = nets.get(&net.trunc()) {
                return Some((net.trunc(), sites));
            }
        }
        None
    }

    /// Where a node with these InternalIPs belongs.
    pub fn assign(&self, internal_ips: &[IpAddr]) -> SiteMatch {
        let mut winners: BTreeSet<&String> = BTreeSet::new();
        let mut best: Option<IpNet> = None;
        for ip in internal_ips {
            if let Some((prefix, sites)) = self.lookup(*ip) {
                winners.extend(sites);
                // Informational only (the Site is decided by agreement above): prefer the
                // IPv4 match, then the longest prefix.
                let rank = |p: &IpNet| (p.addr().is_ipv4(), p.prefix_len());
                if best.is_none_or(|b| rank(&prefix) > rank(&b)) {
                    best = Some(prefix);
                }
            }
        }
        match (winners.len(), best) {
            (0, _) | (_, None) => SiteMatch::Unmatched,
            (1, Some(prefix)) => SiteMatch::Assigned {
                site: winners.into_iter().next().cloned().unwrap_or_default(),
                prefix,
            },
            _ => SiteMatch::Conflict {
                sites: winners.into_iter().cloned().collect(),
            },
        }
    }
}

/// Pairs of different Sites whose prefixes overlap. CIDRs overlap only by nesting, so one
/// sorted sweep with a stack of enclosing prefixes finds them all.
fn find_overlaps(all: &BTreeSet<(IpNet, String)>) -> Vec<SiteOverlap> {
    let mut sorted: Vec<&(IpNet, String)> = all.iter().collect();
    // Address order, shorter (enclosing) prefixes first.
    sorted.sort_by_key(|(net, site)| (net.network(), net.prefix_len(), site.clone()));
    let mut out = BTreeSet::new();
    let mut stack: Vec<&(IpNet, String)> = Vec::new();
    for item in sorted {
        let (net, site) = item;
        while stack.last().is_some_and(|(outer, _)| !outer.contains(net)) {
            stack.pop();
        }
        for (outer, outer_site) in &stack {
            if outer_site != site {
                let (a, b) = if (outer_site, outer) <= (site, net) {
                    ((outer_site, outer), (site, net))
                } else {
                    ((site, net), (outer_site, outer))
                };
                out.insert(SiteOverlap {
                    site_a: a.0.clone(),
                    cidr_a: *a.1,
                    site_b: b.0.clone(),
                    cidr_b: *b.1,
                });
            }
        }
        stack.push(item);
    }
    out.into_iter().collect()
}

/// Assigns every node of the snapshot to a Site.
pub fn assign_sites(snapshot: &Snapshot) -> SiteAssignment {
    let index = SiteIndex::new(&snapshot.sites);
    let nodes = snapshot
        .nodes
        .iter()
        .map(|(name, facts)| (name.clone(), index.assign(&facts.internal_ips)))
        .collect();
    SiteAssignment {
        nodes,
        overlaps: index.overlaps,
        invalid: index.invalid,
    }
}

#[cfg(test)]
#[path = "site_tests.rs"]
mod tests;
