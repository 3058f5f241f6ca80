//! Leader election over a coordination.k8s.io Lease.
//!
//! Expiry is judged the way client-go does: not by comparing the holder's `renewTime` with our
//! own wall clock (clocks differ between machines), but by how long *we* have watched the
//! record stay unchanged, on a monotonic clock. Every write carries the resourceVersion it
//! read, so two candidates can never both win one round.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Clock;
use crate::cluster::{Cluster, ClusterError};

/// What the elector decided after looking at the Lease once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease (it does not exist).
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free, released or expired: take it over.
    Acquire,
    /// Someone else holds a live Lease: stand by.
    Wait,
}

/// The pure decision. `unchanged_for` is how long we have observed the same record.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) => {
            // The holder's declared duration governs; a missing or non-positive one falls
            // back to ours rather than meaning "expired at once".
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(default_duration);
            if unchanged_for >= duration {
                Decision::Acquire
            } else {
                Decision::Wait
            }
        }
    }
}

/// One candidate.
pub struct LeaderElector<C> {
    cluster: C,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    clock: Arc<dyn Clock>,
    /// The record (holder, renewTime, resourceVersion) we last saw, and since when.
    observed: Option<(String, Instant)>,
}

impl<C: Cluster> LeaderElector<C> {
    pub fn new(
        cluster: C,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cluster,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            clock,
            observed: None,
        }
    }

    fn now(&self) -> MicroTime {
        MicroTime(self.clock.now())
    }

    /// Looks at the Lease once and acts. `Ok(true)` when we hold it afterwards.
    pub async fn step(&mut self) -> Result<bool, ClusterError> {
        let ns = Some(self.namespace.as_str());
        let current = match self.cluster.get::<Lease>(ns, &self.name).await {
            Ok(l) => Some(l),
            Err(ClusterError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let unchanged_for = match &current {
            Some(l) => {
                let fp = fingerprint(l);
                match &self.observed {
                    Some((seen, since)) if *seen == fp => since.elapsed(),
                    _ => {
                        self.observed = Some((fp, Instant::now()));
                        Duration::ZERO
                    }
                }
            }
            None => Duration::ZERO,
        };
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let decision = decide(spec, &self.identity, unchanged_for, self.duration);
        let result = match decision {
            Decision::Wait => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.held_spec(None)),
                };
                self.cluster.create(ns, &lease).await
            }
            Decision::Renew | Decision::Acquire => {
                let mut lease = current.clone().expect("Renew/Acquire imply a Lease");
                let old = lease.spec.take();
                let mut spec = self.held_spec(old.as_ref());
                if decision == Decision::Renew {
                    spec.acquire_time = old.as_ref().and_then(|s| s.acquire_time.clone());
                    spec.lease_transitions = old.as_ref().and_then(|s| s.lease_transitions);
                }
                lease.spec = Some(spec);
                self.cluster.replace(ns, &self.name, &lease).await
            }
        };
        match result {
            Ok(lease) => {
                if decision != Decision::Renew {
                    info!(lease = %self.name, identity = %self.identity, ?decision, "became leader");
                }
                self.observed = Some((fingerprint(&lease), Instant::now()));
                Ok(true)
            }
            // Someone else wrote first: they won this round.
            Err(ClusterError::Conflict { .. }) | Err(ClusterError::AlreadyExists { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn held_spec(&self, old: Option<&LeaseSpec>) -> LeaseSpec {
        let now = self.now();
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            // Whole seconds, rounded up: a sub-second duration must not be written as 0.
            lease_duration_seconds: Some(
                self.duration
                    .as_secs_f64()
                    .ceil()
                    .max(1.0)
                    .min(f64::from(i32::MAX)) as i32,
            ),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(old.and_then(|s| s.lease_transitions).unwrap_or(0) + 1),
            ..Default::default()
        }
    }

    /// Gives the Lease up on shutdown so a standby takes over at once.
    pub async fn release(&mut self) {
        let ns = Some(self.namespace.as_str());
        let Ok(mut lease) = self.cluster.get::<Lease>(ns, &self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self.cluster.replace(ns, &self.name, &lease).await {
            warn!(error = %e, "could not release the Lease; the standby waits for it to expire");
        }
    }
}

fn fingerprint(lease: &Lease) -> String {
    let spec = lease.spec.as_ref();
    format!(
        "{:?}/{:?}/{:?}",
        spec.and_then(|s| s.holder_identity.as_ref()),
        spec.and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.to_string()),
        lease.metadata.resource_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(who: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", Duration::ZERO, d), Decision::Create);
        assert_eq!(
            decide(Some(&held_by("a", 15)), "a", Duration::ZERO, d),
            Decision::Renew
        );
        let other = held_by("b", 10);
        assert_eq!(
            decide(Some(&other), "a", Duration::from_secs(9), d),
            Decision::Wait
        );
        // The Lease's own duration counts, not ours.
        assert_eq!(
            decide(Some(&other), "a", Duration::from_secs(10), d),
            Decision::Acquire
        );
        // A zero duration is not "always expired".
        assert_eq!(
            decide(Some(&held_by("b", 0)), "a", Duration::from_secs(1), d),
            Decision::Wait
        );
        let released = LeaseSpec::default();
        assert_eq!(
            decide(Some(&released), "a", Duration::ZERO, d),
            Decision::Acquire
        );
    }
}
