//! Leader election over a coordination.k8s.io Lease: the I/O around the pure decision in
//! [`crate::core::lease`] (expiry judged from when *we* last saw the record change, as
//! client-go does). Every write carries the resourceVersion it read, so two candidates can
//! never both win one round.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use super::Clock;
use crate::cluster::{Cluster, ClusterError};
use crate::core::lease::{self, LeaseDecision, LeaseObservation, LeaseRecord, LeaseTiming};

/// One candidate: reads the Lease, asks [`lease::decide`], writes what it says.
pub struct LeaderElector<C> {
    cluster: C,
    namespace: String,
    name: String,
    identity: String,
    timing: LeaseTiming,
    clock: Arc<dyn Clock>,
    observed: LeaseObservation,
}

fn since_epoch(t: Timestamp) -> Duration {
    let secs = u64::try_from(t.as_second()).unwrap_or(0);
    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
    Duration::new(secs, nanos)
}

fn micro_time(d: Duration) -> Option<MicroTime> {
    let secs = i64::try_from(d.as_secs()).ok()?;
    let nanos = i32::try_from(d.subsec_nanos()).ok()?;
    Timestamp::new(secs, nanos).ok().map(MicroTime)
}

/// The Lease spec as the pure decision reads it.
pub fn record_of(spec: Option<&LeaseSpec>) -> LeaseRecord {
    let Some(spec) = spec else {
        return LeaseRecord::default();
    };
    LeaseRecord {
        holder: spec.holder_identity.clone(),
        acquire_time: spec.acquire_time.as_ref().map(|t| since_epoch(t.0)),
        renew_time: spec.renew_time.as_ref().map(|t| since_epoch(t.0)),
        // A missing or non-positive duration means "use ours", never "expired at once".
        lease_duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        transitions: spec
            .lease_transitions
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0),
    }
}

/// The Lease spec to write for a record.
pub fn spec_of(record: &LeaseRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: record.holder.clone(),
        acquire_time: record.acquire_time.and_then(micro_time),
        renew_time: record.renew_time.and_then(micro_time),
        // Whole seconds, rounded up: a sub-second duration must not be written as 0.
        lease_duration_seconds: record
            .lease_duration
            .map(|d| d.as_secs_f64().ceil().clamp(1.0, f64::from(i32::MAX)) as i32),
        lease_transitions: Some(i32::try_from(record.transitions).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

impl<C: Cluster> LeaderElector<C> {
    pub fn new(
        cluster: C,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cluster,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            clock,
            observed: LeaseObservation::default(),
        }
    }

    fn now(&self) -> Duration {
        since_epoch(self.clock.now())
    }

    /// Looks at the Lease once and acts. `Ok(true)` when we hold it afterwards.
    pub async fn step(&mut self) -> Result<bool, ClusterError> {
        let ns = Some(self.namespace.as_str());
        let current = match self.cluster.get::<Lease>(ns, &self.name).await {
            Ok(l) => Some(l),
            Err(ClusterError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let now = self.now();
        self.observed
            .observe(now, current.as_ref().map(|l| record_of(l.spec.as_ref())));
        let decision = lease::decide(now, &self.observed, &self.identity, &self.timing);
        let Some(record) = decision.record().cloned() else {
            return Ok(false);
        };
        let result = match (&decision, current) {
            (LeaseDecision::Create(_), _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec_of(&record)),
                };
                self.cluster.create(ns, &lease).await
            }
            (_, Some(mut lease)) => {
                // Conditional on the resourceVersion read: two candidates cannot both win.
                lease.spec = Some(spec_of(&record));
                self.cluster.replace(ns, &self.name, &lease).await
            }
        };
        match result {
            Ok(stored) => {
                if !matches!(decision, LeaseDecision::Renew(_)) {
                    info!(lease = %self.name, identity = %self.identity, ?decision, "became leader");
                }
                self.observed
                    .observe(now, Some(record_of(stored.spec.as_ref())));
                Ok(true)
            }
            // Someone else wrote first: they won this round.
            Err(ClusterError::Conflict { .. }) | Err(ClusterError::AlreadyExists { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up on shutdown so a standby takes over at once.
    pub async fn release(&mut self) {
        let ns = Some(self.namespace.as_str());
        let Ok(mut lease) = self.cluster.get::<Lease>(ns, &self.name).await else {
            return;
        };
        let Some(record) =
            lease::release(&record_of(lease.spec.as_ref()), &self.identity, self.now())
        else {
            return;
        };
        lease.spec = Some(spec_of(&record));
        if let Err(e) = self.cluster.replace(ns, &self.name, &lease).await {
            warn!(error = %e, "could not release the Lease; the standby waits for it to expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_keeps_sub_second_durations_positive() {
        let rec = LeaseRecord {
            holder: Some("a".into()),
            acquire_time: Some(Duration::from_millis(1_700_000_000_123)),
            renew_time: Some(Duration::from_millis(1_700_000_000_456)),
            lease_duration: Some(Duration::from_millis(600)),
            transitions: 3,
        };
        let back = record_of(Some(&spec_of(&rec)));
        assert_eq!(back.holder, rec.holder);
        assert_eq!(back.renew_time, rec.renew_time);
        assert_eq!(back.transitions, 3);
        // Rounded up to a whole second, never 0 (which would mean "expired at once").
        assert_eq!(back.lease_duration, Some(Duration::from_secs(1)));
        let zero = LeaseSpec {
            lease_duration_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(record_of(Some(&zero)).lease_duration, None);
    }
}
