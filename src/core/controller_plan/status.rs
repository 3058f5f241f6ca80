//! Site status and standard conditions, planned without timestamps; the shell materializes
//! them with [`PlannedSiteStatus::to_status`], which keeps `lastTransitionTime` of conditions
//! whose status did not change (the Kubernetes convention).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{PoolUsage, SiteStatus};

/// Condition types written on a Site.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_POOL_EXHAUSTED: &str = "PoolExhausted";
pub const CONDITION_CONFLICT: &str = "Conflict";

/// A condition without its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCondition {
    pub type_: String,
    pub status: bool,
    /// CamelCase reason, as Kubernetes requires.
    pub reason: String,
    pub message: String,
}

impl PlannedCondition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        PlannedCondition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Merges planned conditions into the previous ones: a condition whose status is unchanged
/// keeps its `lastTransitionTime`; others get `now`. Conditions not planned are dropped.
pub fn merge_conditions(
    previous: &[Condition],
    planned: &[PlannedCondition],
    now: &Time,
    observed_generation: Option<i64>,
) -> Vec<Condition> {
    planned
        .iter()
        .map(|p| {
            let old = previous.iter().find(|c| c.type_ == p.type_);
            let since = match old {
                Some(c) if c.status == p.status_str() => c.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: p.type_.clone(),
                status: p.status_str().to_string(),
                reason: p.reason.clone(),
                message: p.message.clone(),
                last_transition_time: since,
                observed_generation,
            }
        })
        .collect()
}

/// A Site's status as planned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlannedSiteStatus {
    pub node_count: u32,
    pub slice_count: u32,
    pub pools: Vec<PoolUsage>,
    /// Always Ready, PoolExhausted and Conflict, in that order.
    pub conditions: Vec<PlannedCondition>,
}

impl PlannedSiteStatus {
    /// The status to write, given the one the Site has now.
    pub fn to_status(
        &self,
        previous: Option<&SiteStatus>,
        now: &Time,
        observed_generation: Option<i64>,
    ) -> SiteStatus {
        let old = previous
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        SiteStatus {
            node_count: self.node_count,
            slice_count: self.slice_count,
            pools: self.pools.clone(),
            conditions: merge_conditions(old, &self.conditions, now, observed_generation),
        }
    }

    /// The planned condition of a type.
    pub fn condition(&self, type_: &str) -> Option<&PlannedCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// Joins messages for a condition, keeping it readable when there are many.
pub(super) fn summarize(messages: &[String], limit: usize) -> String {
    let mut out: Vec<&str> = messages.iter().take(limit).map(String::as_str).collect();
    let more = messages.len().saturating_sub(limit);
    let extra = format!("and {more} more");
    if more > 0 {
        out.push(&extra);
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_only_while_status_is_unchanged() {
        let planned = vec![
            PlannedCondition::new("Ready", true, "Reconciled", "ok"),
            PlannedCondition::new("Conflict", true, "OverlappingNodeCidrs", "x"),
        ];
        let first = merge_conditions(&[], &planned, &time(100), Some(1));
        assert!(first.iter().all(|c| c.last_transition_time == time(100)));
        let mut again = planned.clone();
        again[1].status = false;
        let second = merge_conditions(&first, &again, &time(200), Some(2));
        assert_eq!(second[0].last_transition_time, time(100));
        assert_eq!(second[1].last_transition_time, time(200));
        assert_eq!(second[1].status, "False");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn summaries_are_bounded() {
        let many: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(summarize(&many[..2], 5), "m0; m1");
        assert!(summarize(&many, 3).ends_with("and 17 more"));
    }
}
