//! Checks of the physical lab itself, before any unbounded-net state: they catch a topology
//! that does not model what the scenario says (a check that could not fail would hide that).

use crate::checks::ping::{PingOpts, ping};
use crate::lab::Lab;
use crate::report::CheckResult;

/// Every node reaches every gateway's external IP over the internet (through NAT), when both
/// sites have an internet uplink.
pub fn gateways_reachable(lab: &Lab) -> CheckResult {
    let mut r = CheckResult::new("underlay: gateways' public IPs", "underlay");
    let mut pairs = 0;
    for from in &lab.topo.nodes {
        let from_site = lab.topo.site(&from.site).expect("site");
        if from_site.wan_ip.is_none() {
            continue;
        }
        for to in lab
            .topo
            .nodes
            .iter()
            .filter(|n| n.external_ip.is_some() && n.name != from.name)
        {
            let ext = to.external_ip.expect("filtered");
            pairs += 1;
            let out = ping(
                &lab.reg.netns_name(&from.netns),
                ext,
                1,
                2,
                PingOpts::default(),
            );
            if !out.ok() {
                r.details
                    .push(format!("{} -> {} ({ext}): no reply", from.name, to.name));
            }
        }
    }
    r.passed = r.details.is_empty();
    r.summary = format!(
        "{} of {pairs} node→public-IP pings answered",
        pairs - r.details.len()
    );
    r
}

/// Nodes of privately interconnected sites reach each other's internal IPs; nodes of sites
/// joined only by the internet do not (their internal IPs are private).
pub fn private_link_carries_internal_ips(lab: &Lab) -> Option<CheckResult> {
    let mut r = CheckResult::new("underlay: internal IPs across sites", "underlay");
    let linked = |a: &str, b: &str| {
        a == b
            || lab
                .topo
                .private_links
                .iter()
                .any(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    };
    let mut checked = 0;
    for from in &lab.topo.nodes {
        for to in lab.topo.nodes.iter().filter(|n| n.site != from.site) {
            checked += 1;
            let expect = linked(&from.site, &to.site);
            let out = ping(
                &lab.reg.netns_name(&from.netns),
                to.internal_ip,
                1,
                1,
                PingOpts::default(),
            );
            if out.ok() != expect {
                r.details.push(format!(
                    "{} -> {} ({}): {} but expected {}",
                    from.name,
                    to.name,
                    to.internal_ip,
                    if out.ok() { "reachable" } else { "unreachable" },
                    if expect {
                        "reachable (private link)"
                    } else {
                        "unreachable (private address over the internet)"
                    }
                ));
            }
        }
    }
    if checked == 0 {
        return None;
    }
    r.passed = r.details.is_empty();
    r.summary = format!("{checked} cross-site internal-IP pings as the topology says");
    Some(r)
}
