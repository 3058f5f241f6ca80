//! The timeline: firing scheduled actions (the scenario's events and random faults).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use unbounded_net::cluster::Cluster;
use unbounded_scenario::{Event, GatewayTarget};

use super::{CONTROLLER_RESTART, Run, now};
use crate::expect::ExpectationResult;
use crate::faults::{Action, Scheduled};

impl Run<'_> {
    pub(super) fn fire(&mut self, s: &Scheduled) {
        let at = self.sim.elapsed();
        self.trace
            .record(at, format!("event {}: {}", s.label, s.action));
        self.fired.insert(s.label.clone(), at);
        if s.random {
            if s.action.is_heal() {
                self.faults.healed(&s.label, at);
            } else {
                let instant = matches!(s.action, Action::Bounce(_));
                self.faults
                    .started(&s.label, s.action.to_string(), at, instant);
            }
        }
        let before = self.reach.clone();
        match &s.action {
            Action::Scenario(ev) => match ev {
                Event::NodeJoin(n) => self.start_node(n),
                Event::NodeLeave(n) => {
                    let _ = now(self.cluster.delete::<Node>(None, n));
                    self.present.remove(n);
                    self.crash_machine(n);
                }
                Event::GatewayCrash(t) => {
                    if let Some(gw) = self.resolve_gateway(t) {
                        self.trace.record(at, format!("  crashing gateway {gw}"));
                        self.crashed_by.insert(s.label.clone(), gw.clone());
                        self.crash_machine(&gw);
                    }
                }
                Event::GatewayRestart(t) => {
                    if let Some(gw) = self.resolve_gateway(t) {
                        self.restart_machine(&gw);
                    }
                }
                Event::AgentRestart(n) => self.sim.bounce(n.as_str()),
                Event::LinkCut(l) => {
                    self.reach.cut.insert(l.clone());
                }
                Event::LinkHeal(l) => {
                    self.reach.cut.remove(l);
                }
                Event::Partition(groups) => {
                    self.reach
                        .partitions
                        .insert(s.label.clone(), groups.clone());
                }
                Event::PartitionHeal(name) => {
                    self.reach.partitions.remove(name);
                }
                Event::ControllerLeaderLoss => self.leader_loss(at, &s.label, false),
            },
            Action::Crash(n) => self.crash_machine(n),
            Action::Restart(n) => self.restart_machine(n),
            Action::Bounce(n) => self.sim.bounce(n.as_str()),
            Action::CutSites(label, a, b) => {
                self.reach
                    .partitions
                    .insert(label.clone(), vec![vec![a.clone()], vec![b.clone()]]);
            }
            Action::HealSites(label) => {
                self.reach.partitions.remove(label);
            }
            Action::Loss(a, b, p) => self.set_site_loss(a, b, *p),
            Action::LeaderLoss => self.leader_loss(at, &s.label, s.random),
        }
        self.apply_reach(&before);
        if s.action.is_heal() {
            self.last_heal = self.last_heal.max(at);
            self.reconverged = None;
            self.rejudge_after_heal();
        }
    }

    /// Crashes the acting leader; its pod restarts [`CONTROLLER_RESTART`] later (the restart is
    /// the fault's heal, labelled `<label>-heal`).
    pub(super) fn leader_loss(&mut self, at: Duration, label: &str, random: bool) {
        let leader = {
            let down = &self.down_hosts;
            let o = self.obs.borrow();
            o.leaders(at).into_iter().find(|n| !down.contains(n))
        };
        if let Some(l) = leader {
            self.trace.record(at, format!("  crashing leader {l}"));
            self.sim.crash(l.as_str());
            self.down_hosts.insert(l.clone());
            {
                let mut o = self.obs.borrow_mut();
                o.acting_leader.remove(&l);
                o.leader_gauges.remove(&l);
            }
            self.schedule.push(Scheduled {
                at: at + CONTROLLER_RESTART,
                label: format!("{label}-heal"),
                action: Action::Restart(l),
                random,
            });
            self.schedule.sort_by_key(|s| s.at);
        } else if random {
            // Nobody to crash: the fault ends where it starts.
            self.faults.healed(label, at);
        }
    }

    pub(super) fn resolve_gateway(&self, t: &GatewayTarget) -> Option<String> {
        match t {
            GatewayTarget::Node(n) => Some(n.clone()),
            GatewayTarget::CrashedBy(ev) => self.crashed_by.get(ev).cloned(),
            GatewayTarget::Carrying(flow) => {
                let traced = self.trace_flow(flow)?;
                let dst = &self.scenario.flow(flow)?.to;
                let is_gw =
                    |n: &str| n != dst && self.scenario.node(n).is_some_and(|x| x.is_gateway());
                // Prefer a gateway chosen out of an ECMP set, so a failover is really exercised.
                traced
                    .hops
                    .iter()
                    .find(|h| is_gw(&h.to) && h.choices > 1)
                    .or_else(|| traced.hops.iter().find(|h| is_gw(&h.to)))
                    .map(|h| h.to.clone())
            }
        }
    }

    /// After a heal, the steady-state expectations are judged again from it.
    pub(super) fn rejudge_after_heal(&mut self) {
        let heal = self.last_heal;
        if self.after_heal.is_empty() {
            let settle = self.heal_deadline();
            self.after_heal = self
                .scenario
                .expect
                .iter()
                .enumerate()
                .filter(|(_, e)| ExpectationResult::is_steady_state(e))
                .map(|(i, e)| (i, ExpectationResult::after_heal(e, i, heal, settle)))
                .collect();
        } else {
            for (_, r) in &mut self.after_heal {
                r.reanchor(heal);
            }
        }
    }
}
