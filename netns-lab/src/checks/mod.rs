//! Checks executed for real against a running lab.

use std::time::{Duration, Instant};

use unbounded_scenario::Expectation;

use crate::lab::Lab;
use crate::report::CheckResult;

pub mod connectivity;
pub mod continuous;
pub mod path;
pub mod ping;
pub mod underlay;
pub mod wire;

/// The lab's own sanity checks of the physical topology.
pub fn underlay_checks(lab: &Lab) -> Vec<CheckResult> {
    let mut results = vec![underlay::gateways_reachable(lab)];
    results.extend(underlay::private_link_carries_internal_ips(lab));
    results
}

/// What a deadline counts from: the run's start, or the instant the lab acted an event out
/// (as in the simulator, never the moment a check began looking).
#[derive(Clone, Debug)]
pub struct Anchor {
    pub at: Instant,
    /// `start`, or `event NAME`.
    pub what: String,
}

impl Anchor {
    pub fn start(at: Instant) -> Anchor {
        Anchor {
            at,
            what: "start".into(),
        }
    }

    /// From the anchor to `t`.
    pub fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.at)
    }

    /// `t` written relative to the anchor, for result tables: `kill-gw + 0.25 s`.
    pub fn show(&self, t: Instant) -> String {
        format!("{} + {:.2} s", self.what, self.offset(t).as_secs_f64())
    }
}

/// One expectation that does not depend on the timeline, its deadline counted from `start`.
pub fn run_static(lab: &Lab, index: usize, e: &Expectation, start: &Anchor) -> Option<CheckResult> {
    let label = e.label(index);
    Some(match e {
        Expectation::Connectivity(c) if c.after.is_none() => {
            connectivity::check(lab, &label, c, start)
        }
        Expectation::Path(p) if p.after.is_none() => path::check(lab, &label, p, start),
        Expectation::NoPlaintext(n) => wire::no_plaintext(lab, &label, n),
        Expectation::PathMtu(m) => wire::path_mtu(lab, &label, m),
        _ => return None,
    })
}
