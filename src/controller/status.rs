//! Desired status blocks and their conditions. Pure: the clock's reading is passed in, and a
//! condition keeps its `lastTransitionTime` while its status does not change.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::Conditions;

/// One condition as the controller wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Want {
    pub fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Want {
            type_,
            ok,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// The condition list for `wants`, carrying over transition times from `old` where the
/// status is unchanged.
pub fn conditions(
    old: &Conditions,
    wants: &[Want],
    generation: Option<i64>,
    now: Timestamp,
) -> Conditions {
    wants
        .iter()
        .map(|w| {
            let status = if w.ok { "True" } else { "False" };
            let prev = old.iter().find(|c| c.type_ == w.type_);
            let since = match prev {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: w.type_.to_string(),
                status: status.to_string(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Names in `refs` that are not in `known`, sorted and deduplicated.
pub fn unknown<'a>(refs: &'a [String], known: &BTreeSet<&str>) -> Vec<&'a str> {
    let set: BTreeSet<&str> = refs
        .iter()
        .map(String::as_str)
        .filter(|r| !known.contains(r))
        .collect();
    set.into_iter().collect()
}

/// The Ready condition of a binding object (SitePeering, SiteGatewayPoolAssignment,
/// GatewayPoolPeering): false while it names objects that do not exist.
pub fn binding_ready(missing: &[(&str, Vec<&str>)]) -> Want {
    let parts: Vec<String> = missing
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(kind, names)| format!("unknown {kind}: {}", names.join(", ")))
        .collect();
    if parts.is_empty() {
        Want::new("Ready", true, "Resolved", "every referenced object exists")
    } else {
        Want::new("Ready", false, "UnknownReference", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_change() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        let ready = [Want::new("Ready", true, "Ok", "fine")];
        let first = conditions(&Vec::new(), &ready, Some(1), t0);
        let same = conditions(&first, &ready, Some(2), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].observed_generation, Some(2));
        let broken = [Want::new("Ready", false, "Bad", "broken")];
        let flipped = conditions(&same, &broken, Some(2), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn unknown_references_are_named() {
        let known = BTreeSet::from(["a", "b"]);
        let refs = vec!["a".to_string(), "x".to_string(), "x".to_string()];
        assert_eq!(unknown(&refs, &known), vec!["x"]);
        let want = binding_ready(&[("Sites", vec!["x"]), ("GatewayPools", vec![])]);
        assert!(!want.ok);
        assert_eq!(want.message, "unknown Sites: x");
        assert!(binding_ready(&[("Sites", vec![])]).ok);
    }
}
