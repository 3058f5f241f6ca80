//! One run of a scenario: the turmoil world, the timeline, and the continuous checks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use ipnet::IpNet;
use serde::Serialize;
use unbounded_net::cluster::InMemoryCluster;
use unbounded_scenario::Scenario;

use crate::api::WriteLedger;
use crate::bugs::Bugs;
use crate::disturb::{Disturbances, FaultSpan};
use crate::expect::{ExpectationResult, Verdict};
use crate::faults::Scheduled;
use crate::invariants;
use crate::observe::Shared;
use crate::reach::Reach;
use crate::trace::Trace;

mod evaluate;
mod events;
mod hosts;
mod setup;

pub const CONTROLLERS: [&str; 2] = ["controller-0", "controller-1"];
/// How long after a leader loss the crashed replica's pod is restarted (past the lease
/// duration, so the standby really takes over first).
const CONTROLLER_RESTART: Duration = Duration::from_secs(30);

/// How one run is set up.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub random_faults: bool,
    pub bugs: Bugs,
    /// turmoil tick.
    pub tick: Duration,
    /// How often expectations and connectivity are evaluated.
    pub check_every: Duration,
    /// Most node pairs traced per evaluation (all when the cluster is smaller).
    pub max_pairs: usize,
    /// Nodes that run an agent host (`None`: every node). The others are Nodes only, with
    /// their key published at registration (generated scale runs).
    pub agents: Option<BTreeSet<String>>,
    /// Print a progress line to stderr every 10 s of virtual time (large runs). The wall time
    /// it shows is read for that line only; nothing simulated sees it.
    pub progress: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 1,
            random_faults: false,
            bugs: Bugs::default(),
            tick: Duration::from_millis(5),
            check_every: Duration::from_millis(100),
            max_pairs: 2_000,
            agents: None,
            progress: false,
        }
    }
}

/// A point of the convergence timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub delivered_pairs: usize,
    pub traced_pairs: usize,
    pub planned_nodes: usize,
}

/// An invariant violation, with what is needed to replay it.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    pub seed: u64,
    pub at: Duration,
    pub message: String,
    pub trace_tail: Vec<String>,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub random_faults: bool,
    pub passed: bool,
    pub expectations: Vec<ExpectationResult>,
    pub violation: Option<Violation>,
    /// First time every traced pair was delivered.
    pub converged_at: Option<Duration>,
    /// First time every Node in the API had its pod CIDRs (the control plane's convergence).
    pub all_allocated_at: Option<Duration>,
    /// Time from the last fault's heal to full connectivity again.
    pub reconverged_after_heal: Option<Duration>,
    pub ended_at: Duration,
    pub api_writes: u64,
    pub api_writes_by_kind: BTreeMap<String, u64>,
    pub nodes: usize,
    pub trace_hash: String,
    pub trace_lines: usize,
    pub samples: Vec<Sample>,
    /// The random faults drawn for this seed, with when each healed and was seen recovered.
    pub random_faults_applied: Vec<FaultSpan>,
    #[serde(skip)]
    pub trace: Trace,
}

/// Runs an async call of the in-memory store to completion (it never awaits real I/O).
fn now<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    f.now_or_never()
}

/// The state of one run.
struct Run<'a> {
    scenario: &'a Scenario,
    cfg: RunConfig,
    sim: turmoil::Sim<'static>,
    cluster: InMemoryCluster,
    obs: Shared,
    ledger: Rc<RefCell<WriteLedger>>,
    reach: Reach,
    trace: Trace,
    schedule: Vec<Scheduled>,
    fired: BTreeMap<String, Duration>,
    crashed_by: BTreeMap<String, String>,
    down_hosts: BTreeSet<String>,
    present: BTreeSet<String>,
    first_cidrs: BTreeMap<String, Vec<IpNet>>,
    last_rv: u64,
    expectations: Vec<ExpectationResult>,
    samples: Vec<Sample>,
    converged_at: Option<Duration>,
    last_heal: Duration,
    reconverged: Option<Duration>,
    joins: usize,
    registered: BTreeSet<String>,
    next_api_check: Duration,
    all_allocated_at: Option<Duration>,
    /// Random faults as spans, to judge expectations relative to them.
    faults: Disturbances,
    /// Steady-state expectations judged again from the last heal (scenario's or random), by
    /// index into the scenario's expectations.
    after_heal: Vec<(usize, ExpectationResult)>,
}

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, cfg: RunConfig) -> RunResult {
    let (mut r, end) = Run::new(scenario, &cfg);
    let mut violation = None;
    let mut last_leaders: Vec<String> = Vec::new();
    let mut next_check = Duration::ZERO;
    let started = std::time::Instant::now();
    let mut next_progress = Duration::ZERO;
    loop {
        let at = r.sim.elapsed();
        while r.schedule.first().is_some_and(|s| s.at <= at) {
            let s = r.schedule.remove(0);
            r.fire(&s);
        }
        if let Err(e) = r.sim.step() {
            violation = Some(format!("a host failed: {e}"));
        }
        let at = r.sim.elapsed();
        for line in std::mem::take(&mut r.obs.borrow_mut().log) {
            r.trace.record(at, line);
        }
        let leaders: Vec<String> = {
            let down = &r.down_hosts;
            r.obs
                .borrow()
                .leaders(at)
                .into_iter()
                .filter(|n| !down.contains(n))
                .collect()
        };
        if leaders != last_leaders {
            r.trace.record(at, format!("acting leader: {leaders:?}"));
            last_leaders = leaders;
        }
        let mut check = || -> Result<(), String> {
            r.check_api()?;
            {
                let o = r.obs.borrow();
                let down = &r.down_hosts;
                invariants::check_leaders(&o, at, &|n| !down.contains(n))?;
                invariants::check_stale_routes(&o, at)?;
            }
            if at >= next_check {
                next_check = at + r.cfg.check_every;
                r.evaluate(at)?;
            }
            Ok(())
        };
        if violation.is_none()
            && let Err(e) = check()
        {
            violation = Some(e);
        }
        if cfg.progress && at >= next_progress {
            next_progress = at + Duration::from_secs(10);
            progress_line(&r, at, started.elapsed());
        }
        if violation.is_some() || at >= end {
            break;
        }
    }
    let at = r.sim.elapsed();
    let violation = violation.map(|message| {
        r.trace.record(at, format!("INVARIANT VIOLATED: {message}"));
        Violation {
            seed: cfg.seed,
            at,
            message,
            trace_tail: r.trace.tail(40).into_iter().map(String::from).collect(),
        }
    });
    let mut expectations = r.expectations;
    expectations.extend(r.after_heal.into_iter().map(|(_, e)| e));
    for e in &mut expectations {
        e.finish();
    }
    // Random faults are judged against too: an expectation a random fault overlapped is judged
    // relative to it or reported as not judged (see `disturb`), never skipped.
    let passed = violation.is_none() && expectations.iter().all(|e| e.verdict != Verdict::Fail);
    let counts = r.cluster.write_counts();
    let api_writes_by_kind: BTreeMap<String, u64> =
        counts.iter().map(|(k, c)| (k.clone(), c.total())).collect();
    RunResult {
        scenario: scenario.name.clone(),
        seed: cfg.seed,
        random_faults: cfg.random_faults,
        passed,
        expectations,
        violation,
        converged_at: r.converged_at,
        reconverged_after_heal: r.reconverged,
        all_allocated_at: r.all_allocated_at,
        ended_at: at,
        api_writes: api_writes_by_kind.values().sum(),
        api_writes_by_kind,
        nodes: r.present.len(),
        trace_hash: format!("{:016x}", r.trace.hash()),
        trace_lines: r.trace.len(),
        samples: r.samples,
        random_faults_applied: r.faults.spans,
        trace: r.trace,
    }
}

fn progress_line(r: &Run<'_>, at: Duration, wall: Duration) {
    let last = r.samples.last();
    eprintln!(
        "progress: virtual {} wall {:.1?}: {} nodes with a plan, {}/{} traced pairs delivered, {} API writes",
        crate::trace::fmt_time(at),
        wall,
        last.map_or(0, |s| s.planned_nodes),
        last.map_or(0, |s| s.delivered_pairs),
        last.map_or(0, |s| s.traced_pairs),
        r.cluster
            .write_counts()
            .values()
            .map(|c| c.total())
            .sum::<u64>()
    );
}
