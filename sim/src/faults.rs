//! The schedule of a run: the scenario's timeline, plus random faults drawn from the seed.

use std::fmt;
use std::time::Duration;

use unbounded_scenario::{Event, Scenario};

use crate::rng::SimRng;

/// Something the run does at a virtual instant.
#[derive(Clone, Debug)]
pub enum Action {
    Scenario(Event),
    /// The machine dies (kernel state lost).
    Crash(String),
    /// A crashed machine (or controller pod) starts again.
    Restart(String),
    /// The agent process restarts; the machine keeps its state.
    Bounce(String),
    /// Partition (labelled) between two sites.
    CutSites(String, String, String),
    HealSites(String),
    /// Packet loss between two sites (0 heals it).
    Loss(String, String, f64),
    LeaderLoss,
}

impl Action {
    /// True for actions that end a fault (used to time re-convergence).
    pub fn is_heal(&self) -> bool {
        matches!(
            self,
            Action::Restart(_) | Action::HealSites(_) | Action::Loss(_, _, 0.0)
        ) || matches!(
            self,
            Action::Scenario(
                Event::GatewayRestart(_) | Event::LinkHeal(_) | Event::PartitionHeal(_)
            )
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Scenario(e) => write!(f, "{} {:?}", e.key(), e),
            Action::Crash(n) => write!(f, "crash {n}"),
            Action::Restart(n) => write!(f, "restart {n}"),
            Action::Bounce(n) => write!(f, "agent restart {n}"),
            Action::CutSites(l, a, b) => write!(f, "partition {l}: {a} | {b}"),
            Action::HealSites(l) => write!(f, "heal {l}"),
            Action::Loss(a, b, p) => write!(f, "loss {a}<->{b} {:.0}%", p * 100.0),
            Action::LeaderLoss => write!(f, "controller leader loss"),
        }
    }
}

/// One scheduled action.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub at: Duration,
    pub label: String,
    pub action: Action,
    /// Drawn by the fault generator (not the scenario's timeline).
    pub random: bool,
}

/// The scenario's own timeline.
pub fn timeline(s: &Scenario) -> Vec<Scheduled> {
    s.timeline
        .iter()
        .map(|e| Scheduled {
            at: e.at.as_std(),
            label: e.label(),
            action: Action::Scenario(e.event.clone()),
            random: false,
        })
        .collect()
}

/// Random faults for `seed`: two to five faults between 20 s and 50 s, each healed within
/// 2–10 s (crashes, agent restarts, site partitions, packet loss, leader losses).
pub fn random(s: &Scenario, seed: u64) -> Vec<Scheduled> {
    let mut rng = SimRng::new(seed ^ 0x5eed_fa17);
    let nodes: Vec<String> = s.initial_nodes().map(|n| n.name.clone()).collect();
    let sites: Vec<String> = s.topology.sites.iter().map(|x| x.name.clone()).collect();
    let mut out = Vec::new();
    let count = 2 + rng.below(4);
    for i in 0..count {
        let at = Duration::from_millis(rng.millis(20_000, 50_000));
        let heal = at + Duration::from_millis(rng.millis(2_000, 10_000));
        let label = format!("fault-{i}");
        let pick = |rng: &mut SimRng, v: &[String]| v[rng.below(v.len() as u64) as usize].clone();
        match rng.below(5) {
            0 if !nodes.is_empty() => {
                let n = pick(&mut rng, &nodes);
                out.push(Scheduled {
                    at,
                    label: label.clone(),
                    action: Action::Crash(n.clone()),
                    random: true,
                });
                out.push(Scheduled {
                    at: heal,
                    label: format!("{label}-heal"),
                    action: Action::Restart(n),
                    random: true,
                });
            }
            1 if !nodes.is_empty() => {
                let n = pick(&mut rng, &nodes);
                out.push(Scheduled {
                    at,
                    label,
                    action: Action::Bounce(n),
                    random: true,
                });
            }
            2 if sites.len() > 1 => {
                let a = pick(&mut rng, &sites);
                let b = loop {
                    let b = pick(&mut rng, &sites);
                    if b != a {
                        break b;
                    }
                };
                out.push(Scheduled {
                    at,
                    label: label.clone(),
                    action: Action::CutSites(label.clone(), a, b),
                    random: true,
                });
                out.push(Scheduled {
                    at: heal,
                    label: format!("{label}-heal"),
                    action: Action::HealSites(label),
                    random: true,
                });
            }
            3 if sites.len() > 1 => {
                let a = pick(&mut rng, &sites);
                let b = pick(&mut rng, &sites);
                let p = rng.millis(5, 30) as f64 / 100.0;
                out.push(Scheduled {
                    at,
                    label: label.clone(),
                    action: Action::Loss(a.clone(), b.clone(), p),
                    random: true,
                });
                out.push(Scheduled {
                    at: heal,
                    label: format!("{label}-heal"),
                    action: Action::Loss(a, b, 0.0),
                    random: true,
                });
            }
            _ => out.push(Scheduled {
                at,
                label,
                action: Action::LeaderLoss,
                random: true,
            }),
        }
    }
    out
}
