//! Timeline checks: time order, known names, and a replay of the events that rejects the
//! impossible (a node joining twice, restarting a gateway that never crashed, healing a link
//! that is up).

use std::collections::{HashMap, HashSet};

use super::{Problems, check_name, check_unique, one_of};
use crate::Scenario;
use crate::timeline::{Event, GatewayTarget};
use crate::topology::Role;

/// The world as the timeline changes it.
struct Replay<'a> {
    present: HashSet<&'a str>,
    crashed: HashSet<&'a str>,
    cut: HashSet<&'a str>,
    /// Partition event name → still in force.
    partitions: HashMap<&'a str, bool>,
    /// Gateway crash event name → the node it took down (unknown for `carrying`) while
    /// that gateway is still down.
    crashes: HashMap<&'a str, Option<&'a str>>,
}

pub fn check(scenario: &Scenario, problems: &mut Problems) {
    let mut replay = Replay {
        present: scenario.initial_nodes().map(|n| n.name.as_str()).collect(),
        crashed: HashSet::new(),
        cut: HashSet::new(),
        partitions: HashMap::new(),
        crashes: HashMap::new(),
    };
    let mut previous = None;
    for (i, entry) in scenario.timeline.iter().enumerate() {
        let base = format!("timeline[{i}]");
        if let Some(name) = &entry.name {
            check_name(name, "event", format!("{base}.name"), problems);
        }
        if let Some(before) = previous
            && entry.at < before
        {
            problems.at(
                format!("{base}.at"),
                format!(
                    "timeline is out of order: {} comes after {before}; sort the entries by `at`",
                    entry.at
                ),
            );
        }
        previous = Some(entry.at);
        let path = format!("{base}.{}", entry.event.key());
        event(
            scenario,
            &mut replay,
            entry.name.as_deref(),
            &entry.event,
            &path,
            problems,
        );
    }
    check_unique(
        scenario
            .timeline
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((format!("timeline[{i}].name"), e.name.as_deref()?))),
        "event",
        problems,
    );
}

fn event<'a>(
    scenario: &'a Scenario,
    replay: &mut Replay<'a>,
    name: Option<&'a str>,
    event: &'a Event,
    path: &str,
    problems: &mut Problems,
) {
    match event {
        Event::GatewayCrash(GatewayTarget::Carrying(flow)) => {
            if scenario.flow(flow).is_none() {
                problems.at(
                    format!("{path}.carrying"),
                    format!(
                        "unknown flow `{flow}`: define it under `flows` or use one of {}",
                        one_of(scenario.flows.iter().map(|f| f.name.as_str()))
                    ),
                );
            }
            if let Some(name) = name {
                replay.crashes.insert(name, None);
            }
            return;
        }
        Event::GatewayCrash(GatewayTarget::CrashedBy(_)) => {
            problems.at(
                path,
                "`crashedBy` selects a gateway to restart: crash a node name or `carrying: FLOW`",
            );
            return;
        }
        Event::GatewayRestart(GatewayTarget::Carrying(_)) => {
            problems.at(
                path,
                "`carrying` selects a live gateway: restart a node name or `crashedBy: EVENT`",
            );
            return;
        }
        Event::GatewayRestart(GatewayTarget::CrashedBy(crash)) => {
            match replay.crashes.remove(crash.as_str()) {
                Some(node) => {
                    if let Some(node) = node {
                        replay.crashed.remove(node);
                    }
                }
                None => problems.at(
                    format!("{path}.crashedBy"),
                    format!(
                        "no gateway is down from an event named `{crash}` here: name an earlier gatewayCrash ({})",
                        one_of(replay.crashes.keys().copied())
                    ),
                ),
            }
            return;
        }
        _ => {}
    }
    if let Some(node_name) = event.node() {
        let Some(node) = scenario.node(node_name) else {
            problems.at(
                path,
                format!(
                    "unknown node `{node_name}`: use one of {}",
                    one_of(scenario.topology.nodes.iter().map(|n| n.name.as_str()))
                ),
            );
            return;
        };
        let key = event.key();
        let present = replay.present.contains(node_name);
        let crashed = replay.crashed.contains(node_name);
        let problem = match event {
            Event::NodeJoin(_) if present => Some(format!(
                "node `{node_name}` is already in the cluster here: set `present: false` on it in topology.nodes, or remove this event"
            )),
            Event::NodeJoin(_) => {
                replay.present.insert(node_name);
                None
            }
            Event::NodeLeave(_) | Event::AgentRestart(_) | Event::GatewayCrash(_) if !present => {
                Some(format!(
                    "node `{node_name}` is not in the cluster here: add a `nodeJoin` before this {key}, or set `present: true`"
                ))
            }
            Event::GatewayCrash(_) if node.role != Role::Gateway => Some(format!(
                "node `{node_name}` is a worker: gatewayCrash needs a `role: gateway` node (use agentRestart or nodeLeave for workers)"
            )),
            Event::GatewayCrash(_) | Event::AgentRestart(_) if crashed => Some(format!(
                "node `{node_name}` is crashed here: add a `gatewayRestart` before this {key}"
            )),
            Event::GatewayCrash(_) => {
                replay.crashed.insert(node_name);
                if let Some(name) = name {
                    replay.crashes.insert(name, Some(node_name));
                }
                None
            }
            Event::GatewayRestart(_) if !crashed => Some(format!(
                "gateway `{node_name}` is not crashed here: add a `gatewayCrash` before this restart"
            )),
            Event::GatewayRestart(_) => {
                replay.crashed.remove(node_name);
                replay.crashes.retain(|_, down| *down != Some(node_name));
                None
            }
            Event::NodeLeave(_) => {
                replay.present.remove(node_name);
                replay.crashed.remove(node_name);
                None
            }
            _ => None,
        };
        if let Some(message) = problem {
            problems.at(path, message);
        }
        return;
    }
    match event {
        Event::LinkCut(link) | Event::LinkHeal(link) => {
            if scenario.link(link).is_none() {
                problems.at(
                    path,
                    format!(
                        "unknown link `{link}`: use one of {}",
                        one_of(scenario.topology.links.iter().map(|l| l.name.as_str()))
                    ),
                );
                return;
            }
            let cutting = matches!(event, Event::LinkCut(_));
            let was_cut = replay.cut.contains(link.as_str());
            if cutting && was_cut {
                problems.at(path, format!("link `{link}` is already cut here: add a `linkHeal` first"));
            } else if !cutting && !was_cut {
                problems.at(path, format!("link `{link}` is not cut here: add a `linkCut` before healing it"));
            } else if cutting {
                replay.cut.insert(link);
            } else {
                replay.cut.remove(link.as_str());
            }
        }
        Event::Partition(groups) => partition(scenario, replay, name, groups, path, problems),
        Event::PartitionHeal(target) => match replay.partitions.get_mut(target.as_str()) {
            Some(active @ true) => *active = false,
            Some(false) => problems.at(
                path,
                format!("partition `{target}` is already healed here: remove this entry"),
            ),
            None => problems.at(
                path,
                format!(
                    "no earlier partition is named `{target}`: give the partition entry `name: {target}` or use one of {}",
                    one_of(replay.partitions.keys().copied())
                ),
            ),
        },
        _ => {}
    }
}

fn partition<'a>(
    scenario: &'a Scenario,
    replay: &mut Replay<'a>,
    name: Option<&'a str>,
    groups: &'a [Vec<String>],
    path: &str,
    problems: &mut Problems,
) {
    if groups.len() < 2 {
        problems.at(
            path,
            "a partition needs at least two groups: write `partition: [[site-a], [site-b]]`",
        );
    }
    let mut seen: HashSet<&str> = HashSet::new();
    for (g, group) in groups.iter().enumerate() {
        if group.is_empty() {
            problems.at(
                format!("{path}[{g}]"),
                "empty partition group: name at least one site or node",
            );
        }
        for (m, member) in group.iter().enumerate() {
            let at = format!("{path}[{g}][{m}]");
            if scenario.site(member).is_none() && scenario.node(member).is_none() {
                problems.at(
                    at,
                    format!("unknown site or node `{member}`: a partition group lists topology sites or nodes"),
                );
            } else if !seen.insert(member) {
                problems.at(
                    at,
                    format!("`{member}` is in two partition groups: put it in one"),
                );
            }
        }
    }
    if let Some(name) = name {
        replay.partitions.insert(name, true);
    }
}
