//! Invariants checked after every step; the first violation stops the run.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use unbounded_net::core::{NodeFacts, Snapshot, assign_sites};

use crate::observe::Observatory;

/// Grace after a peer is declared down before a route through it is a violation (the agent
/// reconciles on its next loop pass).
pub const PULL_GRACE: Duration = Duration::from_millis(200);

/// Checks the API-side invariants on the Nodes and Sites as stored. `first_cidrs` remembers
/// each node's first pod CIDRs.
pub fn check_api(
    snap: &Snapshot,
    first_cidrs: &mut BTreeMap<String, Vec<IpNet>>,
) -> Result<(), String> {
    let mut all: Vec<(&IpNet, &str)> = Vec::new();
    for (name, facts) in &snap.nodes {
        for c in &facts.pod_cidrs {
            all.push((c, name));
        }
        if !facts.pod_cidrs.is_empty() {
            match first_cidrs.get(name) {
                Some(first) if *first != facts.pod_cidrs => {
                    return Err(format!(
                        "node {name} pod CIDRs changed from {first:?} to {:?}",
                        facts.pod_cidrs
                    ));
                }
                Some(_) => {}
                None => {
                    first_cidrs.insert(name.clone(), facts.pod_cidrs.clone());
                }
            }
        }
    }
    // Sorted by network address, an overlap is always between neighbours' ranges.
    all.sort_by_key(|(c, _)| (c.network(), c.prefix_len()));
    for w in all.windows(2) {
        let ((a, na), (b, nb)) = (w[0], w[1]);
        if a.contains(&b.network()) || b.contains(&a.network()) {
            return Err(format!(
                "nodes {na} ({a}) and {nb} ({b}) hold overlapping pod CIDRs"
            ));
        }
    }
    let assignment = assign_sites(snap);
    for (name, m) in &assignment.nodes {
        let facts: &NodeFacts = &snap.nodes[name];
        if let Some(label) = &facts.site_label
            && m.site() != Some(label.as_str())
        {
            return Err(format!(
                "node {name} is labelled site={label} but belongs to {:?}",
                m.site()
            ));
        }
    }
    Ok(())
}

/// At most one controller replica acting as leader.
pub fn check_leaders(
    obs: &Observatory,
    now: Duration,
    running: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let acting: Vec<String> = obs
        .leaders(now)
        .into_iter()
        .filter(|n| running(n))
        .collect();
    if acting.len() > 1 {
        return Err(format!(
            "controllers {acting:?} act as leader at the same time"
        ));
    }
    Ok(())
}

/// No applied route keeps a nexthop through a peer its agent declared down more than
/// [`PULL_GRACE`] ago (unless every nexthop of that route is down: routes fail open).
pub fn check_stale_routes(obs: &Observatory, now: Duration) -> Result<(), String> {
    for (node, view) in &obs.nodes {
        if !view.up {
            continue;
        }
        let Some(plan) = &view.applied else { continue };
        let overdue: Vec<&String> = view
            .declared_down
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) > PULL_GRACE)
            .map(|(p, _)| p)
            .collect();
        if overdue.is_empty() {
            continue;
        }
        for (prefix, route) in &plan.routes {
            let all_down = route
                .nexthops
                .iter()
                .all(|h| view.declared_down.contains_key(&h.peer));
            if all_down {
                continue;
            }
            for h in &route.nexthops {
                if overdue.contains(&&h.peer) && !view.pulled.contains(&h.peer) {
                    return Err(format!(
                        "node {node} still routes {prefix} via {} which it declared down at {:?}",
                        h.peer, view.declared_down[&h.peer]
                    ));
                }
            }
        }
    }
    Ok(())
}
