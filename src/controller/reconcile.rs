//! One reconcile pass: observed objects in, writes out. The decisions come from the pure core
//! (site assignment, the pod CIDR allocator, gateway pool status, slice layout); this file
//! only sequences them and turns differences into writes through the cluster seam.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::{instrument, warn};

use super::Clock;
use super::events::{EventRecorder, Subject};
use super::slices::{CAPACITY, layout, slice_name, slice_spec};
use super::status::{Want, binding_ready, conditions, unknown};
use super::store::Observed;
use super::writes::{LabelChange, Writer};
use crate::api::{
    BindingStatus, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SiteNodeSlice, SitePeering,
    SiteStatus,
};
use crate::cluster::Cluster;
use crate::core::{
    AllocError, NodeFacts, NodeProblem, PlanIndex, PlanSettings, PodCidrAllocator, SiteMatch,
    assign_sites, pool_status,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::ObjectMeta;

/// What one pass did (for logs, tests and the benchmark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub nodes: usize,
    pub allocated: usize,
    pub unallocated: usize,
    pub labelled: usize,
    pub slices_written: usize,
    pub errors: usize,
}

#[derive(Clone)]
pub struct Reconciler<C> {
    pub writer: Writer<C>,
    pub events: EventRecorder<C>,
    pub clock: Arc<dyn Clock>,
    pub settings: PlanSettings,
}

fn alloc_reason(e: &AllocError) -> &'static str {
    match e {
        AllocError::Exhausted { .. } => "PodCIDRPoolExhausted",
        AllocError::UnknownSite { .. } => "UnknownSite",
        AllocError::NoEligibleAssignment { .. } => "NoEligiblePodCIDRAssignment",
        AllocError::AssignmentDisabled { .. } => "PodCIDRAssignmentDisabled",
    }
}

impl<C: Cluster> Reconciler<C> {
    #[instrument(skip_all)]
    pub async fn pass(&self) -> PassReport {
        let observed = self.writer.store.with(|o| o.clone());
        let mut snap = observed.snapshot();
        let assignment = assign_sites(&snap);
        let mut alloc = PodCidrAllocator::from_snapshot(&snap);
        let mut report = PassReport {
            nodes: snap.nodes.len(),
            ..Default::default()
        };
        let mut exhausted: BTreeSet<String> = BTreeSet::new();

        for (name, m) in &assignment.nodes {
            let facts = &snap.nodes[name];
            let label = match m {
                SiteMatch::Assigned { site, .. } if facts.site_label.as_deref() != Some(site) => {
                    LabelChange::Set(site)
                }
                SiteMatch::Unmatched if facts.site_label.is_some() => LabelChange::Remove,
                _ => LabelChange::Keep,
            };
            if let SiteMatch::Conflict { sites } = m {
                let msg = format!(
                    "InternalIPs match several Sites equally: {}",
                    sites.join(", ")
                );
                self.events
                    .warn(Subject::of::<Node>(name), "SiteConflict", &msg)
                    .await;
            }
            let bad_cidr = facts
                .problems
                .iter()
                .any(|p| matches!(p, NodeProblem::MalformedPodCidr { .. }));
            let mut cidrs = None;
            if let Some(site) = m.site().filter(|_| facts.pod_cidrs.is_empty() && !bad_cidr) {
                match alloc.allocate(site, name) {
                    Ok(c) => cidrs = Some(c),
                    Err(e) => {
                        report.unallocated += 1;
                        self.writer.metrics.allocation_failures.inc();
                        if matches!(e, AllocError::Exhausted { .. }) {
                            exhausted.insert(site.to_string());
                        }
                        let subject = Subject::of::<Node>(name);
                        self.events
                            .warn(subject, alloc_reason(&e), &e.to_string())
                            .await;
                    }
                }
            }
            if label == LabelChange::Keep && cidrs.is_none() {
                continue;
            }
            let node = &observed.nodes[name];
            match self.writer.update_node(node, label, cidrs.as_deref()).await {
                Ok(stored) => {
                    let fresh = NodeFacts::from_node(&stored);
                    if let Some(ours) = &cidrs {
                        if fresh.pod_cidrs == *ours {
                            report.allocated += 1;
                        } else {
                            // Someone else set them first: theirs stand, ours go back.
                            ours.iter().for_each(|c| alloc.release(c));
                            fresh.pod_cidrs.iter().for_each(|c| alloc.hold(c));
                        }
                    }
                    if label != LabelChange::Keep {
                        report.labelled += 1;
                    }
                    snap.nodes.insert(name.clone(), fresh);
                }
                Err(e) => {
                    report.errors += 1;
                    cidrs.iter().flatten().for_each(|c| alloc.release(c));
                    warn!(node = %name, error = %e, "node update failed; retrying next pass");
                }
            }
        }

        // SiteNodeSlices: one layout per Site, nodes keep their slots.
        let mut slice_counts: BTreeMap<&str, u32> = BTreeMap::new();
        let mut wanted_slices: BTreeSet<String> = BTreeSet::new();
        for site in snap.sites.keys() {
            let members: BTreeSet<&str> = assignment.nodes_of(site).collect();
            let existing: BTreeMap<u32, Vec<String>> = observed
                .slices
                .values()
                .filter(|s| s.spec.site_name == *site)
                .map(|s| {
                    (
                        s.spec.slice_index,
                        s.spec.nodes.iter().map(|n| n.name.clone()).collect(),
                    )
                })
                .collect();
            let desired = layout(&existing, &members, CAPACITY);
            slice_counts.insert(site, desired.len() as u32);
            for (index, nodes) in desired {
                let name = slice_name(site, index);
                let spec = slice_spec(site, index, &nodes, &snap.nodes);
                wanted_slices.insert(name.clone());
                let current = observed.slices.get(&name);
                if current.is_some_and(|c| c.spec == spec) {
                    continue;
                }
                let obj = SiteNodeSlice {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: spec.clone(),
                };
                report.slices_written += 1;
                let res = self
                    .writer
                    .upsert(
                        |o: &mut Observed| &mut o.slices,
                        current,
                        &obj,
                        |o| o.spec = spec.clone(),
                    )
                    .await;
                if let Err(e) = res {
                    report.errors += 1;
                    warn!(slice = %name, error = %e, "slice write failed; retrying next pass");
                }
            }
        }
        for name in observed
            .slices
            .keys()
            .filter(|n| !wanted_slices.contains(*n))
        {
            if let Err(e) = self
                .writer
                .delete::<SiteNodeSlice>(|o| &mut o.slices, name)
                .await
            {
                report.errors += 1;
                warn!(slice = %name, error = %e, "slice delete failed");
            }
        }

        self.site_statuses(
            &observed,
            &assignment,
            &alloc,
            &exhausted,
            &slice_counts,
            &mut report,
        )
        .await;
        self.pool_statuses(&observed, &snap, &mut report).await;
        self.binding_statuses(&observed, &mut report).await;
        report
    }

    async fn site_statuses(
        &self,
        observed: &Observed,
        assignment: &crate::core::SiteAssignment,
        alloc: &PodCidrAllocator,
        exhausted: &BTreeSet<String>,
        slice_counts: &BTreeMap<&str, u32>,
        report: &mut PassReport,
    ) {
        let now = self.clock.now();
        for (name, site) in &observed.sites {
            let is_exhausted = exhausted.contains(name) || alloc.is_exhausted(name);
            let mut problems: Vec<String> = assignment
                .overlaps
                .iter()
                .filter(|o| o.site_a == *name || o.site_b == *name)
                .map(|o| o.message())
                .collect();
            problems.extend(
                assignment
                    .invalid
                    .iter()
                    .filter(|i| i.site == *name)
                    .map(|i| i.to_string()),
            );
            problems.extend(
                alloc
                    .problems()
                    .iter()
                    .filter(|p| p.sites().contains(&name.as_str()))
                    .map(|p| p.to_string()),
            );
            for p in &problems {
                self.events
                    .warn(Subject::of::<Site>(name), "SiteConflict", p)
                    .await;
            }
            let exhausted_msg =
                format!("pod CIDR pools of Site {name} have no free block; add cidrBlocks");
            if is_exhausted {
                self.events
                    .warn(
                        Subject::of::<Site>(name),
                        "PodCIDRPoolExhausted",
                        &exhausted_msg,
                    )
                    .await;
            }
            let wants = [
                Want::new(
                    "Ready",
                    !is_exhausted && problems.is_empty(),
                    if is_exhausted || !problems.is_empty() {
                        "Degraded"
                    } else {
                        "Reconciled"
                    },
                    if problems.is_empty() && !is_exhausted {
                        "nodes are assigned and allocated".to_string()
                    } else {
                        "see the PoolExhausted and Conflict conditions".to_string()
                    },
                ),
                if is_exhausted {
                    Want::new("PoolExhausted", true, "NoFreeBlocks", exhausted_msg.clone())
                } else {
                    Want::new(
                        "PoolExhausted",
                        false,
                        "BlocksAvailable",
                        "pools have free blocks",
                    )
                },
                if problems.is_empty() {
                    Want::new(
                        "Conflict",
                        false,
                        "NoConflict",
                        "no overlapping or invalid CIDRs",
                    )
                } else {
                    Want::new("Conflict", true, "CidrConflict", problems.join("; "))
                },
            ];
            let old = site.status.clone().unwrap_or_default();
            let status = SiteStatus {
                node_count: assignment.nodes_of(name).count() as u32,
                slice_count: slice_counts.get(name.as_str()).copied().unwrap_or(0),
                pools: alloc.usage(name),
                conditions: conditions(&old.conditions, &wants, site.metadata.generation, now),
            };
            let res = self
                .writer
                .update_status(
                    |o: &mut Observed| &mut o.sites,
                    site,
                    |s| s.status = Some(status.clone()),
                )
                .await;
            if let Err(e) = res {
                report.errors += 1;
                warn!(site = %name, error = %e, "site status write failed");
            }
        }
    }

    async fn pool_statuses(
        &self,
        observed: &Observed,
        snap: &crate::core::Snapshot,
        report: &mut PassReport,
    ) {
        let now = self.clock.now();
        let index = PlanIndex::new(snap, self.settings);
        for (name, pool) in &observed.pools {
            let Some(mut status) = pool_status(&index, name) else {
                continue;
            };
            let old = pool.status.clone().unwrap_or_default();
            let want = if status.nodes.is_empty() {
                Want::new(
                    "Ready",
                    false,
                    "NoMembers",
                    "no node matches the selector with a published WireGuard key",
                )
            } else {
                Want::new(
                    "Ready",
                    true,
                    "MembersReady",
                    format!("{} member(s)", status.nodes.len()),
                )
            };
            status.conditions = conditions(&old.conditions, &[want], pool.metadata.generation, now);
            let res = self
                .writer
                .update_status(
                    |o: &mut Observed| &mut o.pools,
                    pool,
                    |p| p.status = Some(status.clone()),
                )
                .await;
            if let Err(e) = res {
                report.errors += 1;
                warn!(pool = %name, error = %e, "gateway pool status write failed");
            }
        }
    }

    async fn binding_statuses(&self, observed: &Observed, report: &mut PassReport) {
        let now = self.clock.now();
        let sites: BTreeSet<&str> = observed.sites.keys().map(String::as_str).collect();
        let pools: BTreeSet<&str> = observed.pools.keys().map(String::as_str).collect();
        for (name, obj) in &observed.assignments {
            let want = binding_ready(&[
                ("Sites", unknown(&obj.spec.sites, &sites)),
                ("GatewayPools", unknown(&obj.spec.gateway_pools, &pools)),
            ]);
            self.binding::<SiteGatewayPoolAssignment>(
                name,
                obj,
                &obj.status,
                want,
                obj.metadata.generation,
                now,
                |o| &mut o.assignments,
                report,
            )
            .await;
        }
        for (name, obj) in &observed.site_peerings {
            let want = binding_ready(&[("Sites", unknown(&obj.spec.sites, &sites))]);
            self.binding::<SitePeering>(
                name,
                obj,
                &obj.status,
                want,
                obj.metadata.generation,
                now,
                |o| &mut o.site_peerings,
                report,
            )
            .await;
        }
        for (name, obj) in &observed.pool_peerings {
            let want = binding_ready(&[("GatewayPools", unknown(&obj.spec.gateway_pools, &pools))]);
            self.binding::<GatewayPoolPeering>(
                name,
                obj,
                &obj.status,
                want,
                obj.metadata.generation,
                now,
                |o| &mut o.pool_peerings,
                report,
            )
            .await;
        }
    }

    #[allow(clippy::too_many_arguments)] // reason: one call per binding kind; a struct would only rename them
    async fn binding<K>(
        &self,
        name: &str,
        obj: &K,
        old: &Option<BindingStatus>,
        want: Want,
        generation: Option<i64>,
        now: k8s_openapi::jiff::Timestamp,
        slot: super::store::Slot<K>,
        report: &mut PassReport,
    ) where
        K: crate::cluster::ClusterObject + HasBindingStatus,
    {
        if !want.ok {
            self.events
                .warn(Subject::of::<K>(name), "UnknownReference", &want.message)
                .await;
        }
        let old_conditions = old.clone().unwrap_or_default().conditions;
        let status = BindingStatus {
            conditions: conditions(&old_conditions, &[want], generation, now),
        };
        let res = self
            .writer
            .update_status(slot, obj, |o| o.set_binding_status(status.clone()))
            .await;
        if let Err(e) = res {
            report.errors += 1;
            warn!(kind = %K::kind(&()), name, error = %e, "status write failed");
        }
    }
}

/// The three binding kinds share one status shape.
pub trait HasBindingStatus {
    fn set_binding_status(&mut self, status: BindingStatus);
}

macro_rules! binding_status {
    ($($t:ty),*) => {$(
        impl HasBindingStatus for $t {
            fn set_binding_status(&mut self, status: BindingStatus) {
                self.status = Some(status);
            }
        }
    )*};
}
binding_status!(SiteGatewayPoolAssignment, SitePeering, GatewayPoolPeering);
