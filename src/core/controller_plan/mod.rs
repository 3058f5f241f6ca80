//! The controller's whole job as one pure function: from the observed [`Snapshot`] and the
//! SiteNodeSlices that exist, the writes it wants — site labels, pod CIDRs for nodes lacking
//! them, slices, Site and GatewayPool status, and events. Deterministic: the same input gives
//! the same plan, whichever replica computes it.

mod events;
mod status;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use tracing::{debug, instrument};

pub use events::{EventType, ObjectRef, PlannedEvent};
pub use status::{
    CONDITION_CONFLICT, CONDITION_POOL_EXHAUSTED, CONDITION_READY, PlannedCondition,
    PlannedSiteStatus, merge_conditions,
};

use super::alloc::{AllocError, PodCidrAllocator, PoolProblem};
use super::plan_index::{PlanIndex, PlanSettings};
use super::plan_problem::PlanProblem;
use super::site::{SiteAssignment, SiteMatch, assign_sites};
use super::slices::{SlicePlan, plan_slices};
use super::{NodeFacts, NodeProblem, Snapshot};
use crate::api::{GatewayPoolStatus, SiteNodeSliceSpec, SliceNode};
use status::summarize;

/// How many items a condition message lists before "and N more".
const MESSAGE_ITEMS: usize = 5;

/// Everything the controller should write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControllerPlan {
    /// Where every node belongs (also for callers that need it, e.g. metrics).
    pub assignment: SiteAssignment,
    /// Node → Site label value to set (label missing or naming another Site).
    pub site_labels: BTreeMap<String, String>,
    /// Node → pod CIDRs to write, for nodes that have none yet (IPv4 first).
    pub pod_cidrs: BTreeMap<String, Vec<IpNet>>,
    /// Nodes that should get pod CIDRs but cannot, and why.
    pub allocation_failures: BTreeMap<String, AllocError>,
    /// Slice objects and the writes that reach them.
    pub slices: SlicePlan,
    /// Status of every Site.
    pub site_status: BTreeMap<String, PlannedSiteStatus>,
    /// Status of every GatewayPool (conditions left empty: the shell owns their timestamps).
    pub gateway_pool_status: BTreeMap<String, GatewayPoolStatus>,
    /// Problems with the binding objects and pools found by the gateway/link planner.
    pub plan_problems: Vec<PlanProblem>,
    /// Events to emit, sorted.
    pub events: Vec<PlannedEvent>,
}

/// Plans the controller's writes. `current_slices`: the SiteNodeSlice objects that exist, by
/// object name.
#[instrument(skip_all, fields(nodes = snapshot.nodes.len(), sites = snapshot.sites.len()))]
pub fn plan_controller(
    snapshot: &Snapshot,
    current_slices: &BTreeMap<String, SiteNodeSliceSpec>,
    settings: PlanSettings,
) -> ControllerPlan {
    let assignment = assign_sites(snapshot);
    let mut allocator = PodCidrAllocator::from_snapshot(snapshot);
    let mut plan = ControllerPlan::default();
    let mut events = Vec::new();

    for (name, facts) in &snapshot.nodes {
        node_problem_events(facts, &mut events);
        // Every snapshot node has an entry (assign_sites covers them all).
        let Some(site_match) = assignment.nodes.get(name) else {
            continue;
        };
        match site_match {
            SiteMatch::Assigned { site, prefix } => {
                if facts.site_label.as_deref() != Some(site) {
                    plan.site_labels.insert(name.clone(), site.clone());
                    events.push(PlannedEvent::normal(
                        ObjectRef::node(name),
                        "SiteAssigned",
                        format!("node {name} belongs to Site {site} (nodeCidr {prefix})"),
                    ));
                }
                if needs_pod_cidrs(facts) {
                    match allocator.allocate(site, name) {
                        Ok(blocks) => {
                            let list: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
                            events.push(PlannedEvent::normal(
                                ObjectRef::node(name),
                                "PodCIDRAllocated",
                                format!(
                                    "node {name} gets pod CIDRs {} from Site {site}",
                                    list.join(", ")
                                ),
                            ));
                            plan.pod_cidrs.insert(name.clone(), blocks);
                        }
                        Err(e) => {
                            events.push(PlannedEvent::warning(
                                ObjectRef::node(name),
                                alloc_reason(&e),
                                e.to_string(),
                            ));
                            plan.allocation_failures.insert(name.clone(), e);
                        }
                    }
                }
            }
            SiteMatch::Conflict { sites } => events.push(PlannedEvent::warning(
                ObjectRef::node(name),
                "SiteConflict",
                format!(
                    "node {name} matches Sites {} equally (InternalIPs {:?}); fix their nodeCidrs",
                    sites.join(", "),
                    facts.internal_ips
                ),
            )),
            SiteMatch::Unmatched => events.push(PlannedEvent::warning(
                ObjectRef::node(name),
                "NoMatchingSite",
                format!(
                    "node {name}: no Site's nodeCidrs contain its InternalIPs {:?}; add one",
                    facts.internal_ips
                ),
            )),
        }
    }

    // Slices and pool status see the CIDRs just allocated, so a new node is published in the
    // same round as its allocation.
    let patched;
    let view = if plan.pod_cidrs.is_empty() {
        snapshot
    } else {
        let mut s = snapshot.clone();
        for (name, blocks) in &plan.pod_cidrs {
            if let Some(n) = s.nodes.get_mut(name) {
                n.pod_cidrs = blocks.clone();
            }
        }
        patched = s;
        &patched
    };
    plan.slices = plan_slices(&slice_nodes(view, &assignment), current_slices);

    let site_of: BTreeMap<&str, &str> = assignment
        .nodes
        .iter()
        .filter_map(|(n, m)| Some((n.as_str(), m.site()?)))
        .collect();
    let index = PlanIndex::with_sites(view, settings, &site_of);
    for pool in view.gateway_pools.keys() {
        if let Some(status) = super::gateways::pool_status(&index, pool) {
            plan.gateway_pool_status.insert(pool.clone(), status);
        }
    }
    plan.plan_problems = index
        .problems()
        .iter()
        .filter(|p| !matches!(p, PlanProblem::NodeWithoutSite { .. }))
        .cloned()
        .collect();

    site_config_events(&assignment, allocator.problems(), &mut events);
    for site in snapshot.sites.keys() {
        let st = site_status(site, &assignment, &allocator, &plan);
        plan.site_status.insert(site.clone(), st);
    }
    events.sort();
    events.dedup();
    plan.events = events;
    plan.assignment = assignment;
    debug!(
        labels = plan.site_labels.len(),
        allocations = plan.pod_cidrs.len(),
        failures = plan.allocation_failures.len(),
        slice_writes = plan.slices.upserts.len() + plan.slices.deletes.len(),
        "controller plan"
    );
    plan
}

/// A node needs pod CIDRs when `spec.podCIDRs` is empty. One with unparseable podCIDRs has
/// them set (immutable), so it is never written.
fn needs_pod_cidrs(facts: &NodeFacts) -> bool {
    facts.pod_cidrs.is_empty()
        && !facts
            .problems
            .iter()
            .any(|p| matches!(p, NodeProblem::MalformedPodCidr { .. }))
}

fn alloc_reason(e: &AllocError) -> &'static str {
    match e {
        AllocError::UnknownSite { .. } => "UnknownSite",
        AllocError::NoEligibleAssignment { .. } => "NoEligiblePodCIDRAssignment",
        AllocError::AssignmentDisabled { .. } => "PodCIDRAssignmentDisabled",
        AllocError::Exhausted { .. } => "PoolExhausted",
    }
}

fn node_problem_events(facts: &NodeFacts, events: &mut Vec<PlannedEvent>) {
    for p in &facts.problems {
        events.push(PlannedEvent::warning(
            ObjectRef::node(&facts.name),
            "MalformedNode",
            p.to_string(),
        ));
    }
}

/// What each Site's slices publish: its nodes with their keys, IPs and pod CIDRs.
fn slice_nodes(
    view: &Snapshot,
    assignment: &SiteAssignment,
) -> BTreeMap<String, BTreeMap<String, SliceNode>> {
    let mut out: BTreeMap<String, BTreeMap<String, SliceNode>> = view
        .sites
        .keys()
        .map(|s| (s.clone(), BTreeMap::new()))
        .collect();
    let strings = |v: &[std::net::IpAddr]| v.iter().map(|ip| ip.to_string()).collect();
    for (name, m) in &assignment.nodes {
        let (Some(site), Some(facts)) = (m.site(), view.nodes.get(name)) else {
            continue;
        };
        let node = SliceNode {
            name: name.clone(),
            wire_guard_public_key: facts.wg_public_key.clone().unwrap_or_default(),
            internal_ips: strings(&facts.internal_ips),
            external_ips: strings(&facts.external_ips),
            pod_cidrs: facts.pod_cidrs.iter().map(|c| c.to_string()).collect(),
            underlay_mtu: facts.underlay_mtu,
        };
        if let Some(nodes) = out.get_mut(site) {
            nodes.insert(name.clone(), node);
        }
    }
    out
}

fn site_config_events(
    assignment: &SiteAssignment,
    pool_problems: &[PoolProblem],
    events: &mut Vec<PlannedEvent>,
) {
    for bad in &assignment.invalid {
        events.push(PlannedEvent::warning(
            ObjectRef::site(&bad.site),
            "InvalidNodeCidr",
            bad.to_string(),
        ));
    }
    for o in &assignment.overlaps {
        for site in [&o.site_a, &o.site_b] {
            events.push(PlannedEvent::warning(
                ObjectRef::site(site),
                "OverlappingNodeCidrs",
                o.message(),
            ));
        }
    }
    for p in pool_problems {
        let reason = match p {
            PoolProblem::InvalidCidr { .. } => "InvalidPodCIDR",
            PoolProblem::InvalidNodeRegex { .. } => "InvalidNodeRegex",
            PoolProblem::InvalidBlockSize { .. } => "InvalidNodeBlockSize",
            PoolProblem::OverlappingPools { .. } => "OverlappingPodCIDRPools",
        };
        let sites: BTreeSet<&str> = p.sites().into_iter().collect();
        for site in sites {
            events.push(PlannedEvent::warning(
                ObjectRef::site(site),
                reason,
                p.to_string(),
            ));
        }
    }
}

fn site_status(
    site: &str,
    assignment: &SiteAssignment,
    allocator: &PodCidrAllocator,
    plan: &ControllerPlan,
) -> PlannedSiteStatus {
    let node_count = assignment.nodes_of(site).count();
    let mut conflicts: Vec<String> = assignment
        .overlaps
        .iter()
        .filter(|o| o.site_a == site || o.site_b == site)
        .map(|o| o.message())
        .collect();
    let contested: Vec<&str> = assignment
        .nodes
        .iter()
        .filter(
            |(_, m)| matches!(m, SiteMatch::Conflict { sites } if sites.iter().any(|s| s == site)),
        )
        .map(|(n, _)| n.as_str())
        .collect();
    if !contested.is_empty() {
        conflicts.push(format!(
            "{} node(s) also match another Site equally: {}",
            contested.len(),
            summarize(
                &contested.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                MESSAGE_ITEMS
            )
        ));
    }
    let mut invalid: Vec<String> = assignment
        .invalid
        .iter()
        .filter(|p| p.site == site)
        .map(|p| p.to_string())
        .collect();
    for p in allocator
        .problems()
        .iter()
        .filter(|p| p.sites().contains(&site))
    {
        match p {
            PoolProblem::OverlappingPools { .. } => conflicts.push(p.to_string()),
            _ => invalid.push(p.to_string()),
        }
    }
    let waiting: Vec<String> = plan
        .allocation_failures
        .iter()
        .filter(|(n, e)| {
            matches!(e, AllocError::Exhausted { .. })
                && assignment.nodes.get(*n).and_then(SiteMatch::site) == Some(site)
        })
        .map(|(n, _)| n.clone())
        .collect();
    let exhausted = !waiting.is_empty() || allocator.is_exhausted(site);

    let conflict = if conflicts.is_empty() {
        PlannedCondition::new(CONDITION_CONFLICT, false, "NoConflict", "")
    } else {
        PlannedCondition::new(
            CONDITION_CONFLICT,
            true,
            "Conflict",
            summarize(&conflicts, MESSAGE_ITEMS),
        )
    };
    let pool = if !waiting.is_empty() {
        PlannedCondition::new(
            CONDITION_POOL_EXHAUSTED,
            true,
            "PoolExhausted",
            format!(
                "{} node(s) are waiting for pod CIDRs: {}; add cidrBlocks to a podCidrAssignment",
                waiting.len(),
                summarize(&waiting, MESSAGE_ITEMS)
            ),
        )
    } else if exhausted {
        PlannedCondition::new(
            CONDITION_POOL_EXHAUSTED,
            true,
            "PoolExhausted",
            "no pod CIDR block is left for the next node; add cidrBlocks to a podCidrAssignment",
        )
    } else {
        PlannedCondition::new(CONDITION_POOL_EXHAUSTED, false, "PoolsAvailable", "")
    };
    let ready = if !invalid.is_empty() {
        PlannedCondition::new(
            CONDITION_READY,
            false,
            "InvalidSpec",
            summarize(&invalid, MESSAGE_ITEMS),
        )
    } else if !conflicts.is_empty() {
        PlannedCondition::new(
            CONDITION_READY,
            false,
            "Conflict",
            "see the Conflict condition",
        )
    } else if !waiting.is_empty() {
        PlannedCondition::new(
            CONDITION_READY,
            false,
            "PoolExhausted",
            "see the PoolExhausted condition",
        )
    } else {
        PlannedCondition::new(
            CONDITION_READY,
            true,
            "Reconciled",
            format!("{node_count} node(s) assigned"),
        )
    };
    PlannedSiteStatus {
        node_count: u32::try_from(node_count).unwrap_or(u32::MAX),
        slice_count: u32::try_from(plan.slices.slice_count(site)).unwrap_or(u32::MAX),
        pools: allocator.usage(site),
        conditions: vec![ready, pool, conflict],
    }
}

#[cfg(test)]
mod tests;
