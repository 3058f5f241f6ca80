//! Leader election as a pure decision: given what the Lease shows and the time, what should
//! this replica do? The kube-rs controller and the simulator both call [`decide`], so leader
//! hand-over behaves the same in virtual and real time.
//!
//! Expiry is judged the way client-go does it: from when *this* replica last saw the record
//! change (holder or renew time), on its own clock, plus the lease duration — never by
//! comparing another replica's timestamps with ours, so clock skew between replicas cannot
//! make two leaders. The write that acquires or renews must be conditional on the
//! resourceVersion that was read; a conflict means someone else won the race.

use std::time::Duration;

/// Timings of the election (client-go's defaults: 15 s / 10 s / 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a lease stays valid after its last renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops acting as leader (< lease_duration).
    pub renew_deadline: Duration,
    /// How often replicas re-check the lease.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The Lease's spec as read (`coordination.k8s.io/v1`), with times as durations since the Unix
/// epoch (the shell converts `MicroTime`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub acquire_time: Option<Duration>,
    pub renew_time: Option<Duration>,
    /// `leaseDurationSeconds`; the local timing is used when unset.
    pub lease_duration: Option<Duration>,
    pub transitions: u32,
}

/// What this replica knows about the Lease: the record, and when (on its own clock) it first
/// saw that record. Track it with [`LeaseObservation::observe`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseObservation {
    pub record: Option<LeaseRecord>,
    pub seen_at: Duration,
}

impl LeaseObservation {
    /// Updates the observation with a fresh read; the clock restarts only when the record
    /// changed (a live leader keeps changing `renewTime`; a dead one does not).
    pub fn observe(&mut self, now: Duration, record: Option<LeaseRecord>) {
        if record != self.record {
            self.record = record;
            self.seen_at = now;
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease object exists: create it with this record.
    Create(LeaseRecord),
    /// Take the Lease (free, expired, or ours after a restart): replace it with this record,
    /// conditional on the resourceVersion read.
    Acquire(LeaseRecord),
    /// We hold it: replace it with this renewed record, conditional on the resourceVersion.
    Renew(LeaseRecord),
    /// Someone else holds a live lease: act as a follower and look again at `retry_at`.
    StandBy { holder: String, retry_at: Duration },
}

impl LeaseDecision {
    /// The record to write, if any.
    pub fn record(&self) -> Option<&LeaseRecord> {
        match self {
            LeaseDecision::Create(r) | LeaseDecision::Acquire(r) | LeaseDecision::Renew(r) => {
                Some(r)
            }
            LeaseDecision::StandBy { .. } => None,
        }
    }
}

/// The decision for replica `me` at local time `now`.
pub fn decide(
    now: Duration,
    observed: &LeaseObservation,
    me: &str,
    timing: &LeaseTiming,
) -> LeaseDecision {
    let fresh = |transitions, acquire_time| LeaseRecord {
        holder: Some(me.to_string()),
        acquire_time: Some(acquire_time),
        renew_time: Some(now),
        lease_duration: Some(timing.lease_duration),
        transitions,
    };
    let Some(rec) = &observed.record else {
        return LeaseDecision::Create(fresh(0, now));
    };
    let holder = rec.holder.as_deref().filter(|h| !h.is_empty());
    if holder == Some(me) {
        let acquired = rec.acquire_time.unwrap_or(now);
        return LeaseDecision::Renew(fresh(rec.transitions, acquired));
    }
    let duration = rec.lease_duration.unwrap_or(timing.lease_duration);
    let expires = observed.seen_at.saturating_add(duration);
    match holder {
        Some(h) if now < expires => LeaseDecision::StandBy {
            holder: h.to_string(),
            retry_at: now.saturating_add(timing.retry_period).min(expires),
        },
        // Free (released) or expired: take it, counting a transition of leadership.
        _ => LeaseDecision::Acquire(fresh(rec.transitions.saturating_add(1), now)),
    }
}

/// True while a leader may still act: its last successful renewal (on its own clock) is within
/// the renew deadline. A leader past it must stop leading even before anyone else takes over.
pub fn still_leading(now: Duration, last_renewed: Duration, timing: &LeaseTiming) -> bool {
    now < last_renewed.saturating_add(timing.renew_deadline)
}

/// The record that gives the Lease up on clean shutdown (holder cleared, so a standby takes it
/// at its next retry instead of waiting for expiry); `None` if we do not hold it.
pub fn release(record: &LeaseRecord, me: &str, now: Duration) -> Option<LeaseRecord> {
    (record.holder.as_deref() == Some(me)).then(|| LeaseRecord {
        holder: None,
        renew_time: Some(now),
        ..record.clone()
    })
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
