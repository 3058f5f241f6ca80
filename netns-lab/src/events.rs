//! Timeline events acted out on the lab: a gateway crash is the machine going dark (its agent
//! and WireGuard daemon killed, its underlay link down); an agent restart stops the agent and
//! starts a new one that must adopt the kernel state without dropping flows; a node leaving
//! is deleted from the API and its machine goes away; a controller leader loss kills the
//! replica holding the Lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use unbounded_scenario::{Event, GatewayTarget};

use crate::capture::{Capture, Wire};
use crate::cmd;
use crate::control::AGENT_METRICS;
use crate::lab::{Lab, LabError};
use crate::registry;

/// What earlier events did, for events that refer to them.
#[derive(Debug, Default)]
pub struct EventState {
    /// Crash event name → the gateway it took down.
    pub crashed_by: BTreeMap<String, String>,
}

/// The gateway carrying a flow right now: the one whose underlay port sees most of the
/// flow's packets during half a second (its pod packets, or WireGuard data addressed to it).
fn carrying_gateway(lab: &Lab, flow: &str) -> Result<String, LabError> {
    let f = lab
        .scenario
        .flows
        .iter()
        .find(|f| f.name == flow)
        .ok_or_else(|| unknown(flow))?;
    let dst = lab.pods.get(&f.to).ok_or_else(|| unknown(&f.to))?.ip;
    let dir = registry::lab_dir(&lab.reg.lab());
    let mut caps = Vec::new();
    for n in lab
        .topo
        .nodes
        .iter()
        .filter(|n| n.gateway && lab.cp.as_ref().is_some_and(|c| c.has_agent(&n.name)))
    {
        let site = lab.topo.site(&n.site).expect("site");
        let path = dir.join(format!("carrying-{}.pcap", n.name));
        let cap = Capture::start_directed(
            &lab.reg.netns_name(&site.netns),
            &n.bridge_port,
            &path,
            Some("out"),
        )
        .map_err(|e| LabError::Io(e.to_string()))?;
        caps.push((n.name.clone(), n.internal_ip, cap));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut carrying: Vec<(usize, String)> = Vec::new();
    for (name, ip, cap) in caps {
        let wires = cap.finish().map_err(|e| LabError::Io(e.to_string()))?;
        let n = wires
            .iter()
            .filter(|w| match w {
                Wire::WireGuard {
                    outer, msg_type: 4, ..
                } => outer.dst == ip,
                other => other.visible_inner().is_some_and(|a| a.dst == dst),
            })
            .count();
        // Probes and keepalives are a few packets a second; a carried stream is hundreds.
        if n >= 50 {
            carrying.push((n, name));
        }
    }
    // Crash one whose site has another gateway, so a failover can be exercised; then the
    // first in file order.
    let siblings = |name: &str| {
        let site = &lab.topo.node(name).expect("node").site;
        lab.topo
            .nodes
            .iter()
            .filter(|n| n.gateway && &n.site == site)
            .count()
    };
    carrying
        .iter()
        .find(|(_, n)| siblings(n) > 1)
        .or(carrying.first())
        .map(|(_, n)| n.clone())
        .ok_or_else(|| LabError::Io(format!("no gateway is carrying flow {flow}")))
}

fn resolve_target(lab: &Lab, state: &EventState, t: &GatewayTarget) -> Result<String, LabError> {
    match t {
        GatewayTarget::Node(n) => Ok(n.clone()),
        GatewayTarget::Carrying(flow) => carrying_gateway(lab, flow),
        GatewayTarget::CrashedBy(ev) => {
            state.crashed_by.get(ev).cloned().ok_or_else(|| unknown(ev))
        }
    }
}

/// An event as the lab acted it out.
#[derive(Clone, Debug)]
pub struct Acted {
    /// The instant of the fault or change itself (after any look-up such as finding the
    /// carrying gateway): deadlines tied to the event count from here.
    pub at: Instant,
    /// What was done, for the result table.
    pub what: String,
    /// A node whose agent the event (re)started: the event is complete when it is ready.
    pub restarted: Option<String>,
}

impl Acted {
    fn now(what: String, at: Instant) -> Acted {
        Acted {
            at,
            what,
            restarted: None,
        }
    }
}

/// When an event's effect was complete.
#[derive(Clone, Debug)]
pub struct Completion {
    pub at: Instant,
    /// What completion means for this event (`agent ready`, `acted out`).
    pub what: String,
    /// false: it never completed (the restarted agent never became ready).
    pub ok: bool,
}

/// How long a restarted agent may take to report ready again.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for the event's completion: a restarted agent answering `/readyz` with 200 again
/// (a reconcile pass without failures); any other event is complete once acted out (a
/// leader loss returns when the other replica holds the Lease, a join once converged).
pub fn completion(lab: &Lab, acted: &Acted, acted_out: Instant) -> Completion {
    let Some(node) = &acted.restarted else {
        return Completion {
            at: acted_out,
            what: "acted out".into(),
            ok: true,
        };
    };
    let Some(ns) = lab.node_netns(node) else {
        return Completion {
            at: Instant::now(),
            what: format!("{node} has no namespace"),
            ok: false,
        };
    };
    let deadline = acted.at + READY_TIMEOUT;
    loop {
        if crate::control::ready::agent_ready(&ns, AGENT_METRICS) {
            return Completion {
                at: Instant::now(),
                what: format!("{node} agent ready"),
                ok: true,
            };
        }
        if Instant::now() > deadline {
            return Completion {
                at: Instant::now(),
                what: format!(
                    "{node} agent NOT ready {} s after the event",
                    READY_TIMEOUT.as_secs()
                ),
                ok: false,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Applies one event. Events the lab cannot act out yet are errors, never skipped silently.
pub fn apply(
    lab: &mut Lab,
    state: &mut EventState,
    name: Option<&str>,
    event: &Event,
) -> Result<Acted, LabError> {
    let at = Instant::now();
    match event {
        Event::GatewayCrash(target) => {
            let node = &resolve_target(lab, state, target)?;
            if let Some(n) = name {
                state.crashed_by.insert(n.to_string(), node.clone());
            }
            let at = Instant::now();
            lab.kill_machine(node)?;
            Ok(Acted::now(
                format!("{node}: agent and daemons killed, eth0 down"),
                at,
            ))
        }
        Event::GatewayRestart(target) => {
            let node = &resolve_target(lab, state, target)?;
            let at = Instant::now();
            lab.boot_machine(node)?;
            Ok(Acted {
                at,
                what: format!("{node}: eth0 up, agent started"),
                restarted: Some(node.clone()),
            })
        }
        Event::AgentRestart(node) => {
            lab.stop_agent(node)?;
            lab.start_agent(node)?;
            Ok(Acted {
                at,
                what: format!("{node}: agent stopped and started again"),
                restarted: Some(node.clone()),
            })
        }
        Event::NodeLeave(node) => {
            lab.leave_node(node)?;
            Ok(Acted::now(
                format!("{node}: Node deleted, machine gone, the others converged"),
                at,
            ))
        }
        Event::LinkCut(link) | Event::LinkHeal(link) => {
            let up = matches!(event, Event::LinkHeal(_));
            let state = if up { "up" } else { "down" };
            let mut touched = 0;
            for pl in lab.topo.private_links.iter().filter(|l| &l.name == link) {
                for site in [&pl.a, &pl.b] {
                    let ns = lab
                        .reg
                        .netns_name(&lab.topo.site(site).expect("site").netns);
                    cmd::ip_batch(&ns, &[format!("link set {} {state}", pl.ifname)]).map_err(io)?;
                    touched += 1;
                }
            }
            if let Some(l) = lab.scenario.topology.link(link).filter(|l| l.is_public()) {
                let inet = lab
                    .topo
                    .internet
                    .as_ref()
                    .expect("internet exists")
                    .netns
                    .clone();
                for site in &l.sites {
                    let port = lab.topo.internet_port(site);
                    cmd::ip_batch(
                        &lab.reg.netns_name(&inet),
                        &[format!("link set {port} {state}")],
                    )
                    .map_err(io)?;
                    touched += 1;
                }
            }
            if touched == 0 {
                return Err(unknown(link));
            }
            Ok(Acted::now(format!("link {link} {state}"), at))
        }
        Event::NodeJoin(node) => {
            lab.join_node(node)?;
            Ok(Acted::now(
                format!("{node}: joined (key, plan, agent, pod)"),
                at,
            ))
        }
        Event::ControllerLeaderLoss => Ok(Acted::now(lab.cp().leader_loss()?, at)),
        Event::Partition(_) | Event::PartitionHeal(_) => Err(LabError::Io(format!(
            "timeline event `{}` is not acted out by the netns lab: a partition must cut the \
             listed groups (and the API server) apart on every path, underlay and management \
             network alike, which the lab cannot do yet; the simulator runs it",
            event.key()
        ))),
    }
}

fn unknown(what: &str) -> LabError {
    LabError::Io(format!(
        "timeline names {what:?}, which the lab does not have"
    ))
}

fn io(e: cmd::CmdError) -> LabError {
    LabError::Io(e.to_string())
}
