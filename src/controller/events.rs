//! Kubernetes Events for problems a user must fix (conflicting Sites, exhausted pools, unknown
//! references). Each distinct (object, reason, message) is recorded once per process, so a
//! problem that persists across reconcile passes does not flood the API server.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tracing::{info, warn};

use super::Clock;
use super::metrics::Metrics;
use crate::cluster::{Cluster, ClusterError};

/// The object an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl Subject {
    pub fn of<K: kube::Resource<DynamicType = ()>>(name: &str) -> Self {
        Subject {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
        }
    }
}

/// Writes Warning Events into one namespace.
#[derive(Clone)]
pub struct EventRecorder<C> {
    cluster: C,
    namespace: String,
    component: String,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    sent: Arc<Mutex<HashSet<(Subject, String, String)>>>,
}

impl<C: Cluster> EventRecorder<C> {
    pub fn new(cluster: C, namespace: &str, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self {
            cluster,
            namespace: namespace.to_string(),
            component: "unbounded-net-controller".into(),
            clock,
            metrics,
            sent: Arc::default(),
        }
    }

    /// Records a Warning Event unless this exact one was already recorded.
    pub async fn warn(&self, subject: Subject, reason: &str, message: &str) {
        let key = (subject.clone(), reason.to_string(), message.to_string());
        if !self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let now = Time(self.clock.now());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:016x}", subject.name, h.finish())),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(subject.api_version.clone()),
                kind: Some(subject.kind.clone()),
                name: Some(subject.name.clone()),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some("Warning".into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                ..Default::default()
            }),
            reporting_component: Some(self.component.clone()),
            ..Default::default()
        };
        info!(kind = %subject.kind, name = %subject.name, reason, message, "event");
        self.metrics.api_writes.inc();
        match self.cluster.create(Some(&self.namespace), &event).await {
            Ok(_) | Err(ClusterError::AlreadyExists { .. }) => {}
            Err(e) => {
                warn!(error = %e, reason, "could not record event");
                // Let a later pass try again.
                self.sent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
        }
    }
}
