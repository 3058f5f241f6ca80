//! Checks executed for real against a running lab.

use crate::lab::Lab;
use crate::report::CheckResult;

pub mod ping;
pub mod underlay;

/// Every check the scenario asks for, plus the lab's own sanity checks.
pub fn run_all(lab: &Lab) -> Vec<CheckResult> {
    let mut results = vec![underlay::gateways_reachable(lab)];
    results.extend(underlay::private_link_carries_internal_ips(lab));
    results
}
