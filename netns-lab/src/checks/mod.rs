//! Checks executed for real against a running lab.

use unbounded_scenario::Expectation;

use crate::lab::Lab;
use crate::report::CheckResult;

pub mod connectivity;
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

/// One expectation that does not depend on the timeline.
pub fn run_static(lab: &Lab, index: usize, e: &Expectation) -> Option<CheckResult> {
    let label = e.label(index);
    Some(match e {
        Expectation::Connectivity(c) if c.after.is_none() => connectivity::check(lab, &label, c),
        Expectation::Path(p) if p.after.is_none() => path::check(lab, &label, p),
        Expectation::NoPlaintext(n) => wire::no_plaintext(lab, &label, n),
        Expectation::PathMtu(m) => wire::path_mtu(lab, &label, m),
        _ => return None,
    })
}
