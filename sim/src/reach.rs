//! Which machines can reach each other: the scenario's sites and links, minus cut links, minus
//! active partitions. Drives both turmoil's partitions and the forwarding model's underlay.

use std::collections::{BTreeMap, BTreeSet};

use unbounded_scenario::Scenario;

use crate::forwarding::Underlay;

/// Where the API server and the controller replicas run: reachable from every site, unless
/// a partition names `control-plane` (or the hosts) in a group.
pub const CONTROL_PLANE_SITE: &str = "control-plane";

/// Reachability state of the world.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    /// Host → site (the API server and controllers sit in [`CONTROL_PLANE_SITE`]).
    pub site_of: BTreeMap<String, String>,
    /// Link name → the sites it joins.
    links: BTreeMap<String, Vec<String>>,
    pub cut: BTreeSet<String>,
    /// Active partitions by event label: groups of site or host names.
    pub partitions: BTreeMap<String, Vec<Vec<String>>>,
    /// Site → its underlay MTU; (site, site) → MTU of the link between them.
    site_mtu: BTreeMap<String, u32>,
    link_mtu: BTreeMap<(String, String), u32>,
}

impl Reach {
    pub fn new(scenario: &Scenario) -> Self {
        let mut r = Reach::default();
        for n in &scenario.topology.nodes {
            r.site_of.insert(n.name.clone(), n.site.clone());
        }
        for l in &scenario.topology.links {
            r.links.insert(l.name.clone(), l.sites.clone());
        }
        let topo = &scenario.topology;
        for a in &topo.sites {
            r.site_mtu.insert(a.name.clone(), a.mtu);
            for b in &topo.sites {
                if let Some(link) = topo.link_between(&a.name, &b.name) {
                    r.link_mtu
                        .insert((a.name.clone(), b.name.clone()), topo.link_mtu(link));
                }
            }
        }
        r
    }

    /// True when an uncut link joins the two sites (or they are the same site). The control
    /// plane reaches every site (its endpoint is public); only partitions cut it off.
    pub fn sites_connected(&self, a: &str, b: &str) -> bool {
        a == b
            || a == CONTROL_PLANE_SITE
            || b == CONTROL_PLANE_SITE
            || self.links.iter().any(|(name, sites)| {
                !self.cut.contains(name)
                    && sites.iter().any(|s| s == a)
                    && sites.iter().any(|s| s == b)
            })
    }

    fn group_of(&self, groups: &[Vec<String>], host: &str) -> Option<usize> {
        let site = self.site_of.get(host).map(String::as_str);
        groups
            .iter()
            .position(|g| g.iter().any(|m| m == host || Some(m.as_str()) == site))
    }

    pub fn hosts_connected(&self, a: &str, b: &str) -> bool {
        let (Some(sa), Some(sb)) = (self.site_of.get(a), self.site_of.get(b)) else {
            return false;
        };
        if !self.sites_connected(sa, sb) {
            return false;
        }
        self.partitions.values().all(|groups| {
            match (self.group_of(groups, a), self.group_of(groups, b)) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            }
        })
    }

    /// True when nothing is cut or partitioned (the common case at scale: no pair to check).
    pub fn is_whole(&self, sites: &[String]) -> bool {
        self.partitions.is_empty()
            && sites
                .iter()
                .all(|a| sites.iter().all(|b| self.sites_connected(a, b)))
    }
}

impl Underlay for Reach {
    fn can_reach(&self, from: &str, to: &str) -> bool {
        self.hosts_connected(from, to)
    }

    fn mtu(&self, from: &str, to: &str) -> u32 {
        let (Some(a), Some(b)) = (self.site_of.get(from), self.site_of.get(to)) else {
            return u32::MAX;
        };
        let site = |s: &String| self.site_mtu.get(s).copied().unwrap_or(u32::MAX);
        let link = self
            .link_mtu
            .get(&(a.clone(), b.clone()))
            .copied()
            .unwrap_or(u32::MAX);
        site(a).min(site(b)).min(link)
    }
}
