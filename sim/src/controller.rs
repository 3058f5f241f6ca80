//! The simulated controller replica: Lease-based leader election over the simulated API, and
//! while leading, the production site assignment (`core::assign_sites`) and pod CIDR allocator
//! (`core::alloc::PodCidrAllocator`) applied to Nodes.
//!
//! The lease decision is local to this shell until `core::lease` lands; it follows the
//! client-go rules: a replica acts only until `renew sent + RENEW_DEADLINE`, strictly before
//! another replica may take an unrenewed lease (`renew + LEASE_DURATION`), both measured on
//! the virtual clock.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use unbounded_net::api::{SITE_LABEL, Site};
use unbounded_net::cluster::{Cluster, ClusterError, MetadataPatch};
use unbounded_net::core::alloc::PodCidrAllocator;
use unbounded_net::core::{NodeFacts, Snapshot, assign_sites};

use crate::api::SimCluster;
use crate::observe::Shared;

pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "unbounded-net-controller";
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);
/// Annotation carrying the renew time in virtual milliseconds (the simulated clock).
const RENEW_MS: &str = "sim.unbounded-cloud.io/renew-ms";

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One election round: returns the time until which this replica may act, if it holds the
/// lease after this round.
async fn elect(
    cluster: &SimCluster,
    me: &str,
    sent: Duration,
) -> Result<Option<Duration>, ClusterError> {
    let ns = Some(LEASE_NAMESPACE);
    let fresh = |rv: Option<String>, transitions: i32| Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            resource_version: rv,
            annotations: Some(BTreeMap::from([(
                RENEW_MS.to_string(),
                millis(sent).to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    };
    match cluster.get::<Lease>(ns, LEASE_NAME).await {
        Err(ClusterError::NotFound { .. }) => {
            cluster.create(ns, &fresh(None, 0)).await?;
            Ok(Some(sent + RENEW_DEADLINE))
        }
        Err(e) => Err(e),
        Ok(lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            let renewed = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RENEW_MS))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let expired = millis(sent) > renewed + millis(LEASE_DURATION);
            if holder != me && !expired {
                return Ok(None);
            }
            let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != me);
            // The resourceVersion makes this a compare-and-swap: a racing replica gets a conflict.
            cluster
                .replace(
                    ns,
                    LEASE_NAME,
                    &fresh(lease.metadata.resource_version.clone(), transitions),
                )
                .await?;
            Ok(Some(sent + RENEW_DEADLINE))
        }
    }
}

/// The controller replica's software.
pub async fn run(me: String, obs: Shared) -> turmoil::Result {
    let cluster = SimCluster::new("api");
    let mut acting_until = Duration::ZERO;
    loop {
        let sent = turmoil::elapsed();
        match elect(&cluster, &me, sent).await {
            Ok(Some(until)) => {
                if acting_until <= sent {
                    obs.borrow_mut().note(&me, "acquired the lease");
                }
                acting_until = until;
            }
            Ok(None) => {}
            Err(_) => {} // keep acting only until the deadline already earned
        }
        obs.borrow_mut()
            .acting_leader
            .insert(me.clone(), acting_until);
        if turmoil::elapsed() < acting_until {
            let _ = reconcile(&cluster, &me, acting_until, &obs).await;
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}

/// Labels nodes with their Site and gives new nodes pod CIDRs. Stops writing as soon as the
/// lease deadline passes.
async fn reconcile(
    cluster: &SimCluster,
    me: &str,
    acting_until: Duration,
    obs: &Shared,
) -> Result<(), ClusterError> {
    let nodes = cluster.list::<Node>(None).await?.items;
    let sites = cluster.list::<Site>(None).await?.items;
    let mut snap = Snapshot::default();
    for s in &sites {
        snap.sites
            .insert(s.metadata.name.clone().unwrap_or_default(), s.spec.clone());
    }
    let mut by_name = BTreeMap::new();
    for n in nodes {
        let facts = NodeFacts::from_node(&n);
        by_name.insert(facts.name.clone(), n);
        snap.nodes.insert(facts.name.clone(), facts);
    }
    let assignment = assign_sites(&snap);
    let reuse_bug = obs.borrow().bugs.allocator_reuses_blocks;
    let mut allocator = if reuse_bug {
        PodCidrAllocator::new(&snap.sites)
    } else {
        PodCidrAllocator::from_snapshot(&snap)
    };
    let still_leading = || turmoil::elapsed() < acting_until;
    for (name, m) in &assignment.nodes {
        let Some(site) = m.site() else { continue };
        let facts = &snap.nodes[name];
        if facts.site_label.as_deref() != Some(site) {
            if !still_leading() {
                return Ok(());
            }
            let patch = MetadataPatch::set_label(SITE_LABEL, site);
            cluster.patch_metadata::<Node>(None, name, &patch).await?;
            obs.borrow_mut()
                .note(me, format!("labelled {name} site={site}"));
        }
        if facts.pod_cidrs.is_empty() {
            let Ok(blocks) = allocator.allocate(site, name) else {
                continue;
            };
            if !still_leading() {
                return Ok(());
            }
            let mut node = cluster.get::<Node>(None, name).await?;
            let cidrs: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
            let spec = node.spec.get_or_insert_with(Default::default);
            spec.pod_cidr = cidrs.first().cloned();
            spec.pod_cidrs = Some(cidrs.clone());
            match cluster.replace(None, name, &node).await {
                Ok(_) => obs
                    .borrow_mut()
                    .note(me, format!("allocated {} to {name}", cidrs.join(","))),
                Err(ClusterError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
