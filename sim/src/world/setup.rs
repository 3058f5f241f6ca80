//! Building a run: the schedule, the turmoil world, the user's objects, the API server and
//! controller hosts, and the initial nodes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use unbounded_net::cluster::{Cluster, InMemoryCluster};
use unbounded_scenario::{Event, KubeObject, Scenario};

use super::{CONTROLLER_RESTART, CONTROLLERS, Run, RunConfig, now};
use crate::api::{WriteLedger, serve};
use crate::disturb::Disturbances;
use crate::expect::{ExpectationResult, longest_window, window};
use crate::faults::{Action, Scheduled};
use crate::observe::Observatory;
use crate::reach::Reach;
use crate::trace::Trace;

/// Least time a run goes on after its last event.
const AFTER_LAST_EVENT: Duration = Duration::from_secs(30);

/// The run's schedule (timeline plus random faults, in order) and when the run ends: once
/// every expectation's deadline has passed, [`AFTER_LAST_EVENT`] after the last action, and
/// the settle time after the last heal (a leader loss heals when its replica restarts).
fn schedule(scenario: &Scenario, cfg: &RunConfig) -> (Vec<Scheduled>, Duration) {
    let mut schedule = crate::faults::timeline(scenario);
    if cfg.random_faults {
        schedule.extend(crate::faults::random(scenario, cfg.seed));
    }
    schedule.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.label.cmp(&b.label)));
    let settle = longest_window(scenario).max(Duration::from_secs(30));
    let mut end = AFTER_LAST_EVENT;
    for s in &schedule {
        let (at, heals) = match s.action {
            Action::LeaderLoss | Action::Scenario(Event::ControllerLeaderLoss) => {
                (s.at + CONTROLLER_RESTART, true)
            }
            _ => (s.at, s.action.is_heal()),
        };
        end = end.max(at + if heals { settle } else { AFTER_LAST_EVENT });
    }
    for e in &scenario.expect {
        let anchor = e
            .after()
            .and_then(|ev| schedule.iter().find(|s| s.label == ev))
            .map_or(Duration::ZERO, |s| s.at);
        end = end.max(anchor + window(e));
    }
    (schedule, end + Duration::from_secs(1))
}

impl<'a> Run<'a> {
    /// The world at t=0, and the virtual time the run ends.
    pub(super) fn new(scenario: &'a Scenario, cfg: &RunConfig) -> (Self, Duration) {
        let (schedule, end) = schedule(scenario, cfg);
        let sim = turmoil::Builder::new()
            .simulation_duration(end + Duration::from_secs(60))
            .tick_duration(cfg.tick)
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(2))
            .rng_seed(cfg.seed)
            .tcp_capacity(1 << 20)
            .udp_capacity(1 << 16)
            .build();
        let cluster = InMemoryCluster::default();
        let obs = Observatory::shared();
        obs.borrow_mut().bugs = cfg.bugs;
        let ledger = Rc::new(RefCell::new(WriteLedger::default()));
        let mut reach = Reach::new(scenario);
        let home = crate::reach::CONTROL_PLANE_SITE.to_string();
        reach.site_of.insert("api".into(), home.clone());
        for c in CONTROLLERS {
            reach.site_of.insert(c.into(), home.clone());
        }
        let mut r = Run {
            scenario,
            expectations: scenario
                .expect
                .iter()
                .enumerate()
                .map(|(i, e)| ExpectationResult::new(e, i))
                .collect(),
            cfg: cfg.clone(),
            sim,
            cluster,
            obs,
            ledger,
            reach,
            trace: Trace::default(),
            schedule,
            fired: BTreeMap::new(),
            crashed_by: BTreeMap::new(),
            down_hosts: BTreeSet::new(),
            present: BTreeSet::new(),
            first_cidrs: BTreeMap::new(),
            last_rv: 0,
            samples: Vec::new(),
            converged_at: None,
            last_heal: Duration::ZERO,
            reconverged: None,
            joins: 0,
            registered: BTreeSet::new(),
            next_api_check: Duration::ZERO,
            all_allocated_at: None,
            faults: Disturbances::default(),
            after_heal: Vec::new(),
        };
        // The user's objects, as `kubectl apply` would create them.
        for m in &scenario.objects {
            let res = match &m.object {
                KubeObject::Site(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
                KubeObject::GatewayPool(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
                KubeObject::SiteGatewayPoolAssignment(o) => {
                    now(r.cluster.create(None, o)).map(|x| x.map(|_| ()))
                }
                KubeObject::SitePeering(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
                KubeObject::GatewayPoolPeering(o) => {
                    now(r.cluster.create(None, o)).map(|x| x.map(|_| ()))
                }
            };
            if !matches!(res, Some(Ok(()))) {
                r.trace.record(
                    Duration::ZERO,
                    format!("could not apply {} {}: {res:?}", m.kind(), m.name()),
                );
            }
        }
        let (c, l) = (r.cluster.clone(), r.ledger.clone());
        r.sim.host("api", move || serve(c.clone(), l.clone()));
        r.registered.insert("api".into());
        r.wire_host("api");
        for name in CONTROLLERS {
            let obs = r.obs.clone();
            // The production controller; the sim's own controller shell only carries the injected
            // allocator bug.
            if cfg.bugs.allocator_reuses_blocks {
                r.sim.host(name, move || {
                    crate::controller::run(name.to_string(), obs.clone())
                });
            } else {
                r.sim.host(name, move || {
                    crate::controller_host::run(name.to_string(), obs.clone())
                });
            }
            r.registered.insert(name.into());
            r.wire_host(name);
        }
        let initial: Vec<String> = scenario.initial_nodes().map(|n| n.name.clone()).collect();
        for n in &initial {
            r.start_node(n);
        }

        (r, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str) -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(name);
        Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn a_run_lasts_past_every_deadline_and_the_settle_time_after_the_last_heal() {
        let cfg = RunConfig::default();
        // Leader loss at 30 s heals when the replica restarts at 60 s; settle 30 s.
        assert_eq!(
            schedule(&scenario("mesh-peering.yaml"), &cfg).1,
            Duration::from_secs(91)
        );
        // late-joiner: 50 s + 60 s is the latest deadline.
        assert_eq!(
            schedule(&scenario("nat-edge.yaml"), &cfg).1,
            Duration::from_secs(111)
        );
        // No events: the longest window (60 s).
        assert_eq!(
            schedule(&scenario("expressroute.yaml"), &cfg).1,
            Duration::from_secs(61)
        );
    }
}
