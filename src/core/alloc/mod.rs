//! Pod CIDR allocation: one block per address family for each node, from its Site's pools.
//!
//! The allocator is rebuilt from what the API shows (every Node's `spec.podCIDRs`), so a
//! restarted or newly elected controller never hands out a held block again, even one that
//! belongs to no current pool. Per Site, the `podCidrAssignments` whose `nodeRegex` matches
//! the node are tried in `priority` order (lower first; unset = 0; equal priorities keep spec
//! order); the first that can supply a block for every family it has wins, so a node never gets
//! half of a dual-stack pair (podCIDRs are immutable once written). Pools that overlap each
//! other are reported, and a block taken from one is held in every pool overlapping it, so no
//! two nodes ever get overlapping blocks.

mod pool;

use std::collections::BTreeMap;

use ipnet::IpNet;
use regex::Regex;

pub use pool::{BlockPool, BlockSizeError, MAX_BLOCK_BITS};

use super::Snapshot;
use crate::api::{PoolUsage, SiteSpec};

/// Default per-node IPv4 block: /24 (254 pods).
pub const DEFAULT_IPV4_BLOCK: u8 = 24;
/// Default per-node IPv6 block: /64.
pub const DEFAULT_IPV6_BLOCK: u8 = 64;
/// Compiled size limit for one `nodeRegex` (guards against pathological patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A configuration problem in a Site's `podCidrAssignments`; the rest of the Site still works.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum PoolProblem {
    #[error(
        "Site {site}: podCidrAssignments[{assignment}].cidrBlocks entry {value:?} is not a CIDR"
    )]
    InvalidCidr {
        site: String,
        assignment: usize,
        value: String,
    },
    #[error(
        "Site {site}: podCidrAssignments[{assignment}].nodeRegex {pattern:?} is invalid ({reason}); the assignment is skipped"
    )]
    InvalidNodeRegex {
        site: String,
        assignment: usize,
        pattern: String,
        reason: String,
    },
    #[error("Site {site}: podCidrAssignments[{assignment}]: {reason}; fix nodeBlockSizes")]
    InvalidBlockSize {
        site: String,
        assignment: usize,
        reason: String,
    },
    #[error(
        "pod CIDR pool {cidr_a} of Site {site_a} overlaps pool {cidr_b} of Site {site_b}; blocks are never handed out twice, but fix the pools"
    )]
    OverlappingPools {
        site_a: String,
        cidr_a: IpNet,
        site_b: String,
        cidr_b: IpNet,
    },
}

impl PoolProblem {
    /// Sites this problem concerns (for their conditions).
    pub fn sites(&self) -> Vec<&str> {
        match self {
            PoolProblem::InvalidCidr { site, .. }
            | PoolProblem::InvalidNodeRegex { site, .. }
            | PoolProblem::InvalidBlockSize { site, .. } => vec![site],
            PoolProblem::OverlappingPools { site_a, site_b, .. } => vec![site_a, site_b],
        }
    }
}

/// Why a node got no pod CIDRs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("node {node}: Site {site} does not exist")]
    UnknownSite { site: String, node: String },
    #[error("node {node}: no podCidrAssignment of Site {site} matches the node (check nodeRegex)")]
    NoEligibleAssignment { site: String, node: String },
    #[error(
        "node {node}: every podCidrAssignment of Site {site} matching the node has assignmentEnabled: false"
    )]
    AssignmentDisabled { site: String, node: String },
    #[error(
        "node {node}: pod CIDR pools of Site {site} are exhausted; add cidrBlocks to a podCidrAssignment"
    )]
    Exhausted { site: String, node: String },
}

#[derive(Clone, Debug)]
struct Assignment {
    /// Position in the Site's `podCidrAssignments`.
    position: usize,
    priority: i32,
    enabled: bool,
    /// Empty = every node.
    regexes: Vec<Regex>,
    /// A `nodeRegex` failed to compile: the assignment is never used for new blocks.
    broken: bool,
    /// Pool indices per family, in `cidrBlocks` order.
    v4: Vec<usize>,
    v6: Vec<usize>,
}

impl Assignment {
    fn matches(&self, node: &str) -> bool {
        !self.broken && (self.regexes.is_empty() || self.regexes.iter().any(|r| r.is_match(node)))
    }
}

/// Per-Site pod CIDR pools with the blocks already held.
#[derive(Clone, Debug, Default)]
pub struct PodCidrAllocator {
    pools: Vec<BlockPool>,
    /// Site owning each pool (parallel to `pools`).
    pool_site: Vec<String>,
    /// For each pool, the other pools overlapping it.
    overlapping: Vec<Vec<usize>>,
    /// Per Site, assignments in the order they are tried.
    sites: BTreeMap<String, Vec<Assignment>>,
    problems: Vec<PoolProblem>,
}

impl PodCidrAllocator {
    /// Builds the pools of every Site, with nothing held.
    pub fn new(sites: &BTreeMap<String, SiteSpec>) -> Self {
        let mut a = PodCidrAllocator::default();
        for (site, spec) in sites {
            let mut list = Vec::new();
            for (position, pca) in spec.pod_cidr_assignments.iter().enumerate() {
                list.push(a.add_assignment(site, position, pca));
            }
            // Stable sort: equal priorities keep the order written in the Site.
            list.sort_by_key(|x| (x.priority, x.position));
            a.sites.insert(site.clone(), list);
        }
        a.find_overlaps();
        a.problems.sort();
        a
    }

    /// Builds the pools and holds every pod CIDR the snapshot's nodes carry.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut a = Self::new(&snapshot.sites);
        for node in snapshot.nodes.values() {
            for cidr in &node.pod_cidrs {
                a.hold(cidr);
            }
        }
        a
    }

    fn add_assignment(
        &mut self,
        site: &str,
        position: usize,
        pca: &crate::api::PodCidrAssignment,
    ) -> Assignment {
        let sizes = pca.node_block_sizes.unwrap_or_default();
        let mut out = Assignment {
            position,
            priority: pca.priority.unwrap_or(0),
            enabled: pca.assignment_enabled.unwrap_or(true),
            regexes: Vec::new(),
            broken: false,
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for pattern in &pca.node_regex {
            match regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(r) => out.regexes.push(r),
                Err(e) => {
                    out.broken = true;
                    self.problems.push(PoolProblem::InvalidNodeRegex {
                        site: site.to_string(),
                        assignment: position,
                        pattern: pattern.clone(),
                        reason: e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    });
                }
            }
        }
        for raw in &pca.cidr_blocks {
            let Ok(cidr) = raw.trim().parse::<IpNet>() else {
                self.problems.push(PoolProblem::InvalidCidr {
                    site: site.to_string(),
                    assignment: position,
                    value: raw.clone(),
                });
                continue;
            };
            let (len, family) = match cidr {
                IpNet::V4(_) => (sizes.ipv4.unwrap_or(DEFAULT_IPV4_BLOCK), &mut out.v4),
                IpNet::V6(_) => (sizes.ipv6.unwrap_or(DEFAULT_IPV6_BLOCK), &mut out.v6),
            };
            match BlockPool::new(cidr, len) {
                Ok(p) => {
                    family.push(self.pools.len());
                    self.pools.push(p);
                    self.pool_site.push(site.to_string());
                }
                Err(e) => self.problems.push(PoolProblem::InvalidBlockSize {
                    site: site.to_string(),
                    assignment: position,
                    reason: e.to_string(),
                }),
            }
        }
        out
    }

    fn find_overlaps(&mut self) {
        self.overlapping = vec![Vec::new(); self.pools.len()];
        // Pools are few (a handful per Site), so pairwise is cheap and runs once per build.
        for i in 0..self.pools.len() {
            for j in (i + 1)..self.pools.len() {
                let (a, b) = (self.pools[i].cidr(), self.pools[j].cidr());
                if a.contains(&b) || b.contains(&a) {
                    self.overlapping[i].push(j);
                    self.overlapping[j].push(i);
                    if a != b || self.pool_site[i] != self.pool_site[j] {
                        self.problems.push(PoolProblem::OverlappingPools {
                            site_a: self.pool_site[i].clone(),
                            cidr_a: a,
                            site_b: self.pool_site[j].clone(),
                            cidr_b: b,
                        });
                    }
                }
            }
        }
    }

    /// Marks a block as taken (a node holds it) in every pool it overlaps.
    pub fn hold(&mut self, cidr: &IpNet) {
        for p in &mut self.pools {
            p.hold(cidr);
        }
    }

    /// Frees a deleted node's block, for long-lived allocators. Only call it once the Node is
    /// gone from the API: [`PodCidrAllocator::from_snapshot`] is the safe default.
    pub fn release(&mut self, cidr: &IpNet) {
        for p in &mut self.pools {
            p.release(cidr);
        }
    }

    /// Configuration problems found while building the pools, sorted.
    pub fn problems(&self) -> &[PoolProblem] {
        &self.problems
    }

    /// Blocks for a new node of `site`: one per family of the first eligible assignment that
    /// can supply all of them (IPv4 first). Nothing is held when it fails.
    pub fn allocate(&mut self, site: &str, node: &str) -> Result<Vec<IpNet>, AllocError> {
        let err = |f: fn(String, String) -> AllocError| Err(f(site.to_string(), node.to_string()));
        let Some(assignments) = self.sites.get(site) else {
            return err(|site, node| AllocError::UnknownSite { site, node });
        };
        let mut eligible = false;
        let mut exhausted = false;
        let mut chosen = None;
        for a in assignments.iter().filter(|a| a.matches(node)) {
            eligible = true;
            if !a.enabled {
                continue;
            }
            let v4 =
                a.v4.iter()
                    .copied()
                    .find(|&p| !self.pools[p].is_exhausted());
            let v6 =
                a.v6.iter()
                    .copied()
                    .find(|&p| !self.pools[p].is_exhausted());
            let complete = (a.v4.is_empty() || v4.is_some()) && (a.v6.is_empty() || v6.is_some());
            if complete && (v4.is_some() || v6.is_some()) {
                chosen = Some([v4, v6]);
                break;
            }
            exhausted |= !a.v4.is_empty() || !a.v6.is_empty();
        }
        let Some(chosen) = chosen else {
            return match (eligible, exhausted) {
                (false, _) => err(|site, node| AllocError::NoEligibleAssignment { site, node }),
                (true, true) => err(|site, node| AllocError::Exhausted { site, node }),
                (true, false) => err(|site, node| AllocError::AssignmentDisabled { site, node }),
            };
        };
        let mut out = Vec::with_capacity(2);
        for p in chosen.into_iter().flatten() {
            if let Some(block) = self.pools[p].allocate() {
                for &q in &self.overlapping[p] {
                    self.pools[q].hold(&block);
                }
                out.push(block);
            }
        }
        Ok(out)
    }

    /// Usage of every pool of `site`, in the order assignments are tried.
    pub fn usage(&self, site: &str) -> Vec<PoolUsage> {
        let Some(assignments) = self.sites.get(site) else {
            return Vec::new();
        };
        assignments
            .iter()
            .flat_map(|a| a.v4.iter().chain(&a.v6))
            .map(|&p| {
                let pool = &self.pools[p];
                PoolUsage {
                    cidr: pool.cidr().to_string(),
                    allocated: u64::try_from(pool.held()).unwrap_or(u64::MAX),
                    capacity: u64::try_from(pool.capacity()).unwrap_or(u64::MAX),
                }
            })
            .collect()
    }

    /// True when a Site has usable pools and none of them can serve another node (every
    /// enabled assignment has a family whose pools are all full).
    pub fn is_exhausted(&self, site: &str) -> bool {
        let full =
            |ps: &[usize]| !ps.is_empty() && ps.iter().all(|&p| self.pools[p].is_exhausted());
        self.sites.get(site).is_some_and(|list| {
            let mut usable = list
                .iter()
                .filter(|a| a.enabled && !a.broken && !(a.v4.is_empty() && a.v6.is_empty()))
                .peekable();
            usable.peek().is_some() && usable.all(|a| full(&a.v4) || full(&a.v6))
        })
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
