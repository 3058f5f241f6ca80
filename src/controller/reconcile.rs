//! One reconcile pass: observed objects in, writes out. Every decision comes from the pure
//! core ([`plan_controller`]: site labels, pod CIDRs, slices, Site and GatewayPool status,
//! events); this file turns the plan into writes through the cluster seam, plus the status of
//! the binding objects (SitePeering, SiteGatewayPoolAssignment, GatewayPoolPeering).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, instrument, warn};

use super::Clock;
use super::events::{EventRecorder, Subject};
use super::status::{Want, binding_ready, conditions, unknown};
use super::store::Observed;
use super::writes::{LabelChange, Writer};
use crate::api::{
    BindingStatus, GatewayPoolPeering, SiteGatewayPoolAssignment, SiteNodeSlice, SiteNodeSliceSpec,
    SitePeering,
};
use crate::cluster::{Cluster, ClusterError};
use crate::core::{ControllerPlan, EventType, NodeFacts, PlanSettings, plan_controller};
use kube::api::ObjectMeta;

/// What one pass did (for logs, tests and the benchmark).
/// A Node update's name, label change, pod CIDRs and outcome.
type NodeWrite<'a> = (
    &'a String,
    LabelChange<'a>,
    Option<&'a Vec<ipnet::IpNet>>,
    Result<Node, ClusterError>,
);

/// Node updates one pass keeps in flight at once.
pub const NODE_WRITE_CONCURRENCY: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub nodes: usize,
    pub allocated: usize,
    pub unallocated: usize,
    pub labelled: usize,
    pub slices_written: usize,
    pub errors: usize,
    /// A Node write did not land as planned (another writer, an error): slices and status
    /// were not written from the stale plan, and another pass is needed.
    pub replan: bool,
}

#[derive(Clone)]
pub struct Reconciler<C> {
    pub writer: Writer<C>,
    pub events: EventRecorder<C>,
    pub clock: Arc<dyn Clock>,
    pub settings: PlanSettings,
}

impl<C: Cluster> Reconciler<C> {
    /// One Node update (label and pod CIDRs), with what it was asked to do.
    async fn write_node<'a>(
        &'a self,
        name: &'a String,
        node: &'a Node,
        label: LabelChange<'a>,
        cidrs: Option<&'a Vec<ipnet::IpNet>>,
    ) -> NodeWrite<'a> {
        let res = self
            .writer
            .update_node(node, label, cidrs.map(Vec::as_slice))
            .await;
        (name, label, cidrs, res)
    }

    #[instrument(skip_all)]
    pub async fn pass(&self) -> PassReport {
        let observed = self.writer.store.with(|o| o.clone());
        let snap = observed.snapshot();
        let current_slices: BTreeMap<String, SiteNodeSliceSpec> = observed
            .slices
            .iter()
            .map(|(n, s)| (n.clone(), s.spec.clone()))
            .collect();
        let plan = plan_controller(&snap, &current_slices, self.settings);
        let mut report = PassReport {
            nodes: snap.nodes.len(),
            unallocated: plan.allocation_failures.len(),
            ..Default::default()
        };
        self.writer
            .metrics
            .allocation_failures
            .inc_by(plan.allocation_failures.len() as u64);

        // Nodes first: label and pod CIDRs in one update each.
        let touched: BTreeSet<&String> = plan
            .site_labels
            .keys()
            .chain(plan.pod_cidrs.keys())
            .collect();
        // Written concurrently (bounded): a burst of joins costs round trips / concurrency,
        // not one round trip per node in a row.
        let mut jobs = Vec::new();
        for name in touched {
            let Some(node) = observed.nodes.get(name) else {
                continue;
            };
            let label = match plan.site_labels.get(name) {
                Some(site) => LabelChange::Set(site),
                None => LabelChange::Keep,
            };
            jobs.push(self.write_node(name, node, label, plan.pod_cidrs.get(name)));
        }
        let mut results = futures::stream::iter(jobs).buffer_unordered(NODE_WRITE_CONCURRENCY);
        while let Some((name, label, cidrs, res)) = results.next().await {
            match res {
                Ok(stored) => {
                    let fresh = NodeFacts::from_node(&stored);
                    match cidrs {
                        Some(ours) if fresh.pod_cidrs == *ours => report.allocated += 1,
                        // Someone else set them first: theirs stand; re-plan from the API.
                        Some(_) => report.replan = true,
                        None => {}
                    }
                    if label != LabelChange::Keep {
                        report.labelled += 1;
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    report.replan = true;
                    warn!(node = %name, error = %e, "node update failed; retrying next pass");
                }
            }
        }
        drop(results);

        self.emit_events(&plan).await;
        if report.replan {
            // Slices and statuses were planned with CIDRs that did not land.
            return report;
        }

        for name in &plan.slices.upserts {
            let spec = plan.slices.desired[name].clone();
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
                    observed.slices.get(name),
                    &obj,
                    |o| o.spec = spec.clone(),
                )
                .await;
            if let Err(e) = res {
                report.errors += 1;
                warn!(slice = %name, error = %e, "slice write failed; retrying next pass");
            }
        }
        for name in &plan.slices.deletes {
            if let Err(e) = self
                .writer
                .delete::<SiteNodeSlice>(|o| &mut o.slices, name)
                .await
            {
                report.errors += 1;
                warn!(slice = %name, error = %e, "slice delete failed");
            }
        }

        let now = Time(self.clock.now());
        for (name, planned) in &plan.site_status {
            let Some(site) = observed.sites.get(name) else {
                continue;
            };
            let status = planned.to_status(site.status.as_ref(), &now, site.metadata.generation);
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
        self.pool_statuses(&observed, &plan, &mut report).await;
        self.binding_statuses(&observed, &mut report).await;
        report
    }

    /// Warnings become Kubernetes Events (deduplicated by the recorder). Normal events
    /// (SiteAssigned, PodCIDRAllocated) are logged only: as Events they would double the API
    /// writes of every node join.
    async fn emit_events(&self, plan: &ControllerPlan) {
        for ev in &plan.events {
            match ev.type_ {
                EventType::Warning => {
                    let subject = Subject {
                        api_version: if ev.regarding.kind == "Node" {
                            "v1".into()
                        } else {
                            format!("{}/v1alpha1", crate::api::GROUP)
                        },
                        kind: ev.regarding.kind.clone(),
                        name: ev.regarding.name.clone(),
                    };
                    self.events.warn(subject, &ev.reason, &ev.message).await;
                }
                EventType::Normal => {
                    info!(kind = %ev.regarding.kind, name = %ev.regarding.name, reason = %ev.reason, message = %ev.message, "event");
                }
            }
        }
    }

    async fn pool_statuses(
        &self,
        observed: &Observed,
        plan: &ControllerPlan,
        report: &mut PassReport,
    ) {
        let now = self.clock.now();
        for (name, pool) in &observed.pools {
            let Some(planned) = plan.gateway_pool_status.get(name) else {
                continue;
            };
            let mut status = planned.clone();
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
