//! Flow and expectation checks: referenced nodes, sites, flows, links and events exist, and
//! each expectation is one a run can measure.

use super::{Problems, check_name, check_unique, one_of};
use crate::Scenario;
use crate::expect::{Expectation, Flow, FlowProtocol, Hop};
use crate::topology::LinkKind;
use crate::values::Members;

pub fn check_flows(scenario: &Scenario, problems: &mut Problems) {
    for (i, flow) in scenario.flows.iter().enumerate() {
        let base = format!("flows[{i}]");
        check_name(&flow.name, "flow", format!("{base}.name"), problems);
        for (field, node) in [("from", &flow.from), ("to", &flow.to)] {
            if scenario.node(node).is_none() {
                problems.at(format!("{base}.{field}"), unknown_node(scenario, node));
            }
        }
        if flow.from == flow.to {
            problems.at(
                format!("{base}.to"),
                "a flow goes between the pods of two different nodes: change `to`",
            );
        }
        if flow.rate == Some(0) {
            problems.at(
                format!("{base}.rate"),
                "rate 0 sends nothing: use packets per second ≥ 1, or drop `rate`",
            );
        }
        if flow.protocol != FlowProtocol::Icmp && flow.port == 0 {
            problems.at(
                format!("{base}.port"),
                "port 0 is not a destination: use 1–65535",
            );
        }
    }
    check_unique(
        scenario
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("flows[{i}].name"), f.name.as_str())),
        "flow",
        problems,
    );
}

pub fn check(scenario: &Scenario, problems: &mut Problems) {
    for (i, expectation) in scenario.expect.iter().enumerate() {
        let base = format!("expect[{i}].{}", expectation.key());
        if let Some(name) = expectation.name() {
            check_name(name, "expectation", format!("{base}.name"), problems);
        }
        let flow = match expectation.flow() {
            Some(name) => match scenario.flow(name) {
                Some(flow) => Some(flow),
                None => {
                    problems.at(
                        format!("{base}.flow"),
                        format!(
                            "unknown flow `{name}`: define it under `flows` or use one of {}",
                            one_of(scenario.flows.iter().map(|f| f.name.as_str()))
                        ),
                    );
                    None
                }
            },
            None => None,
        };
        if let Some(after) = expectation.after()
            && scenario.event(after).is_none()
        {
            problems.at(
                format!("{base}.after"),
                format!(
                    "no timeline entry is named `{after}`: give the event `name: {after}` or use one of {}",
                    one_of(scenario.timeline.iter().filter_map(|e| e.name.as_deref()))
                ),
            );
        }
        match expectation {
            Expectation::Connectivity(c) => {
                members(scenario, &c.from, &format!("{base}.from"), problems);
                members(scenario, &c.to, &format!("{base}.to"), problems);
            }
            Expectation::Path(p) => {
                if let Some(flow) = flow {
                    hops(scenario, flow, &p.hops, &base, problems);
                }
            }
            Expectation::Failover(f) => {
                needs_rate(flow, &base, problems);
                if let Some(event) = scenario.event(&f.after)
                    && !event.event.is_fault()
                {
                    problems.at(
                        format!("{base}.after"),
                        format!(
                            "event `{}` ({}) takes nothing away, so there is no failover to time: name a gatewayCrash, linkCut, partition, nodeLeave, agentRestart or controllerLeaderLoss",
                            f.after,
                            event.event.key()
                        ),
                    );
                }
            }
            Expectation::Uninterrupted(_) => needs_rate(flow, &base, problems),
            Expectation::NoPlaintext(n) => {
                for (j, link) in n.links.names().iter().enumerate() {
                    let at = format!("{base}.links[{j}]");
                    match scenario.link(link) {
                        None => problems.at(
                            at,
                            format!(
                                "unknown link `{link}`: use one of {}",
                                one_of(scenario.topology.links.iter().map(|l| l.name.as_str()))
                            ),
                        ),
                        Some(l) if l.kind != LinkKind::Internet => problems.at(
                            at,
                            format!("link `{link}` is private; noPlaintext watches internet links: list those or write `all`"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            Expectation::PathMtu(m) => {
                if !(576..=9000).contains(&m.mtu) {
                    problems.at(
                        format!("{base}.mtu"),
                        format!("mtu {} is out of range: use 576–9000", m.mtu),
                    );
                }
            }
        }
    }
    check_unique(
        scenario
            .expect
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((format!("expect[{i}].{}.name", e.key()), e.name()?))),
        "expectation",
        problems,
    );
}

fn unknown_node(scenario: &Scenario, node: &str) -> String {
    format!(
        "unknown node `{node}`: use one of {}",
        one_of(scenario.topology.nodes.iter().map(|n| n.name.as_str()))
    )
}

fn needs_rate(flow: Option<&Flow>, base: &str, problems: &mut Problems) {
    if let Some(flow) = flow
        && flow.rate.is_none()
    {
        problems.at(
            format!("{base}.flow"),
            format!("flow `{}` has no rate, so no gap can be measured: give it `rate: 1000` (packets per second)", flow.name),
        );
    }
}

/// Members of a connectivity matrix: `all`, nodes or sites.
fn members(scenario: &Scenario, members: &Members, path: &str, problems: &mut Problems) {
    let Members::Named(names) = members else {
        return;
    };
    for (j, name) in names.iter().enumerate() {
        if scenario.node(name).is_none() && scenario.site(name).is_none() {
            // A bare name has no `[j]` entry in the position index; it falls back to the field.
            let at = format!("{path}[{j}]");
            problems.at(at, format!("unknown node or site `{name}`: name a node or site of the topology, or write `all`"));
        }
    }
}

fn hops(scenario: &Scenario, flow: &Flow, hops: &[Hop], base: &str, problems: &mut Problems) {
    if hops.is_empty() {
        problems.at(
            format!("{base}.hops"),
            "a path needs at least one hop: list each node the packet reaches",
        );
    }
    for (j, hop) in hops.iter().enumerate() {
        let at = format!("{base}.hops[{j}]");
        match &hop.to {
            Members::All => problems.at(
                format!("{at}.to"),
                "a hop goes to a node or a list of alternative nodes, not `all`",
            ),
            Members::Named(names) => {
                for (k, name) in names.iter().enumerate() {
                    if scenario.node(name).is_none() {
                        let path = format!("{at}.to[{k}]");
                        problems.at(path, unknown_node(scenario, name));
                    }
                }
            }
        }
        if !scenario.kernel.carries(hop.encap) {
            problems.at(
                format!("{at}.encap"),
                format!("{:?} is not available on the host kernel: set `kernel: vm` at the top of the scenario", hop.encap.protocol()),
            );
        }
    }
    if let Some(last) = hops.last()
        && last.to.names() != [flow.to.clone()]
    {
        problems.at(
            format!("{base}.hops[{}].to", hops.len() - 1),
            format!(
                "the last hop must reach the flow's destination: write `to: {}`",
                flow.to
            ),
        );
    }
}
