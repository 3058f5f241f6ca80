//! Writes with conflict handling: every update carries the resourceVersion it was based on;
//! a 409 Conflict means "re-read and apply the change again", up to a few times. Objects the
//! controller wrote are recorded in the store at once (write-through).

use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use super::metrics::Metrics;
use super::store::{Slot, Store};
use crate::api::SITE_LABEL;
use crate::cluster::{Cluster, ClusterError, ClusterObject};

/// Attempts per write before giving up until the next pass.
const ATTEMPTS: usize = 5;

/// Which part of an object a write replaces.
#[derive(Clone, Copy)]
enum Part {
    Object,
    Status,
}

/// Node label change: set to a Site, or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelChange<'a> {
    Keep,
    Set(&'a str),
    Remove,
}

#[derive(Clone)]
pub struct Writer<C> {
    pub cluster: C,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

fn nodes_slot(o: &mut super::store::Observed) -> &mut std::collections::BTreeMap<String, Node> {
    &mut o.nodes
}

impl<C: Cluster> Writer<C> {
    /// Sets the site label and, when the Node has none yet, its pod CIDRs — in one update.
    /// Returns the Node as stored. If the Node gained pod CIDRs meanwhile (another writer),
    /// those are kept and ours are not written: the caller compares.
    pub async fn update_node(
        &self,
        node: &Node,
        label: LabelChange<'_>,
        cidrs: Option<&[IpNet]>,
    ) -> Result<Node, ClusterError> {
        let set = |next: &mut Node| {
            let labels = next.metadata.labels.get_or_insert_default();
            match label {
                LabelChange::Keep => {}
                LabelChange::Set(site) => {
                    labels.insert(SITE_LABEL.to_string(), site.to_string());
                }
                LabelChange::Remove => {
                    labels.remove(SITE_LABEL);
                }
            }
            if let Some(cidrs) = cidrs.filter(|c| !c.is_empty()) {
                let spec = next.spec.get_or_insert_default();
                let unset =
                    spec.pod_cidr.is_none() && spec.pod_cidrs.as_ref().is_none_or(Vec::is_empty);
                if unset {
                    // The API server requires podCIDR == podCIDRs[0].
                    spec.pod_cidr = Some(cidrs[0].to_string());
                    spec.pod_cidrs = Some(cidrs.iter().map(|c| c.to_string()).collect());
                }
            }
        };
        self.converge(nodes_slot, node.clone(), Part::Object, set)
            .await
    }

    /// Brings the status of `obj` to what `set` makes of it, via the `/status` subresource.
    pub async fn update_status<K: ClusterObject>(
        &self,
        slot: Slot<K>,
        obj: &K,
        set: impl Fn(&mut K),
    ) -> Result<(), ClusterError> {
        self.converge(slot, obj.clone(), Part::Status, set).await?;
        Ok(())
    }

    /// Creates `obj`, or replaces what is stored under its name when `set` changes it.
    pub async fn upsert<K: ClusterObject>(
        &self,
        slot: Slot<K>,
        existing: Option<&K>,
        obj: &K,
        set: impl Fn(&mut K),
    ) -> Result<(), ClusterError> {
        let name = obj.meta().name.clone().unwrap_or_default();
        let current = match existing {
            Some(e) => e.clone(),
            None => {
                self.metrics.api_writes.inc();
                match self.cluster.create(None, obj).await {
                    Ok(stored) => {
                        self.store.record(slot, stored);
                        return Ok(());
                    }
                    Err(ClusterError::AlreadyExists { .. }) => {
                        self.cluster.get(None, &name).await?
                    }
                    Err(e) => {
                        self.metrics.write_errors.inc();
                        return Err(e);
                    }
                }
            }
        };
        self.converge(slot, current, Part::Object, set).await?;
        Ok(())
    }

    /// Applies `set` to `current` and writes the result (object or `/status`), re-reading and
    /// re-applying on 409 Conflict up to [`ATTEMPTS`] times. Returns the object as stored, or
    /// `current` unchanged when `set` changes nothing.
    async fn converge<K: ClusterObject>(
        &self,
        slot: Slot<K>,
        mut current: K,
        part: Part,
        set: impl Fn(&mut K),
    ) -> Result<K, ClusterError> {
        let name = current.meta().name.clone().unwrap_or_default();
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut next = current.clone();
            set(&mut next);
            if same(&next, &current) {
                return Ok(current);
            }
            self.metrics.api_writes.inc();
            let written = match part {
                Part::Object => self.cluster.replace(None, &name, &next).await,
                Part::Status => self.cluster.replace_status(None, &name, &next).await,
            };
            match written {
                Ok(stored) => {
                    self.store.record(slot, stored.clone());
                    return Ok(stored);
                }
                Err(e @ ClusterError::Conflict { .. }) => {
                    self.metrics.conflicts.inc();
                    last = Some(e);
                    current = self.cluster.get(None, &name).await?;
                    self.store.record(slot, current.clone());
                }
                Err(e) => {
                    self.metrics.write_errors.inc();
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or(ClusterError::Api("conflict retries exhausted".into())))
    }

    pub async fn delete<K: ClusterObject>(
        &self,
        slot: Slot<K>,
        name: &str,
    ) -> Result<(), ClusterError> {
        self.metrics.api_writes.inc();
        match self.cluster.delete::<K>(None, name).await {
            Ok(()) | Err(ClusterError::NotFound { .. }) => {
                self.store.forget(slot, name);
                Ok(())
            }
            Err(e) => {
                self.metrics.write_errors.inc();
                Err(e)
            }
        }
    }
}

/// Equality through JSON: not every API type implements `PartialEq`.
fn same<K: serde::Serialize>(a: &K, b: &K) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
