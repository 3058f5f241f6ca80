//! Runs a scenario on a built lab: the underlay sanity checks, the continuous flows, the
//! expectations that hold from the start, then the timeline with the expectations anchored
//! to its events.
//!
//! Judged as the simulator judges: a deadline counts from its anchor (the run's start, or
//! the instant the lab acted the event out), and the expectations sharing an anchor are
//! judged at the same time, each on its own thread, so a slow one never delays another.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use unbounded_scenario::Expectation;

use crate::checks::continuous::{self, Stream};
use crate::checks::{self, Anchor};
use crate::events::{self, Completion};
use crate::lab::Lab;
use crate::report::CheckResult;

/// Runs everything and returns one result per check.
pub fn run(lab: &mut Lab) -> Vec<CheckResult> {
    let mut results = checks::underlay_checks(lab);
    let start = Anchor::start(Instant::now());

    // Continuous flows, started first so events happen while they run.
    let (streams, failed) = continuous::start_all(lab);
    results.extend(failed);

    let expectations = lab.scenario.expect.clone();
    let from_start: Vec<(usize, &Expectation)> = expectations
        .iter()
        .enumerate()
        .filter(|(_, e)| e.after().is_none())
        .collect();
    let shared: &Lab = lab;
    results.extend(together(&from_start, |i, e| {
        checks::run_static(shared, i, e, &start)
    }));

    // Make sure every stream flows before faults are injected (else a gap is meaningless).
    for (name, s) in &streams {
        let deadline = Instant::now() + Duration::from_secs(30);
        let before = s.received();
        while s.received() < before + 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if s.received() < before + 100 {
            let mut r = CheckResult::new(format!("flow {name}"), "flow");
            r.summary = "the continuous stream never got going (30 s)".into();
            results.push(r);
        }
    }

    // Event times are offsets from the timeline's start, which begins now (after the checks
    // that hold from the start), so slow checks do not eat into a fault's settling time.
    let t0 = Instant::now();
    let mut state = events::EventState::default();
    let timeline = lab.scenario.timeline.clone();
    let flowing = &streams;
    // Flow checks (failover, uninterrupted) read only the streams' timestamps, so they run
    // on past the next event, which then happens on time as in the simulator; the checks
    // that probe the lab (connectivity, path) hold the next event until they are decided.
    results.extend(std::thread::scope(|flows| {
        let mut slots: Vec<Slot<'_>> = Vec::new();
        for ev in &timeline {
            let due = t0 + ev.at.as_std();
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let label = ev.label();
            let tied: Vec<(usize, &Expectation)> = expectations
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.after() == Some(label.as_str()) || e.after() == ev.name.as_deref()
                })
                .collect();
            let mut row = CheckResult::new(format!("event {label}"), "event");
            let acted = match events::apply(lab, &mut state, ev.name.as_deref(), &ev.event) {
                Ok(a) => a,
                Err(e) => {
                    row.summary = e.to_string();
                    slots.push(Slot::Done(row));
                    slots.extend(
                        tied.iter()
                            .map(|(i, e)| Slot::Done(never_fired(*i, e, &label))),
                    );
                    continue;
                }
            };
            let acted_out = Instant::now();
            let anchor = Anchor {
                at: acted.at,
                what: ev.name.clone().unwrap_or_else(|| label.clone()),
            };
            let done: Arc<OnceLock<Completion>> = Arc::new(OnceLock::new());
            let row_slot = slots.len();
            slots.push(Slot::Done(CheckResult::new("", "")));
            let mut probing: Vec<(usize, &Expectation)> = Vec::new();
            let mut probing_slots = Vec::new();
            for &(i, e) in &tied {
                if matches!(e, Expectation::Failover(_) | Expectation::Uninterrupted(_)) {
                    eprintln!("[check] {} …", e.label(i));
                    let p = e.flow().map_or(0.0, |f| continuous::random_loss(lab, f));
                    let (anchor, done) = (anchor.clone(), done.clone());
                    slots.push(Slot::Running(
                        flows.spawn(move || flow_check(i, e, flowing, &anchor, &done, p)),
                    ));
                } else {
                    probing.push((i, e));
                    probing_slots.push(slots.len());
                    slots.push(Slot::Done(CheckResult::new("", "")));
                }
            }
            let lab: &Lab = lab;
            // The checks start at once (their deadlines run from `acted.at`); the completion
            // is watched meanwhile, for the `uninterrupted` windows that end with it.
            let (completion, probed) = std::thread::scope(|s| {
                let checks = s.spawn(|| together(&probing, |i, e| anchored(lab, i, e, &anchor)));
                let c = events::completion(lab, &acted, acted_out);
                let _ = done.set(c.clone());
                (c, checks.join().expect("event checks"))
            });
            for (slot, r) in probing_slots.into_iter().zip(probed) {
                slots[slot] = Slot::Done(r);
            }
            row.passed = completion.ok;
            let at = acted.at.duration_since(t0);
            row.figure("at_ms", at.as_millis() as u64);
            row.figure(
                "completed_ms",
                anchor.offset(completion.at).as_millis() as u64,
            );
            let late = acted.at.saturating_duration_since(due);
            row.summary = format!(
                "at {:.1} s{}: {}; {} at {}",
                at.as_secs_f64(),
                if late > Duration::from_millis(200) {
                    format!(" (due {:.1} s)", ev.at.as_std().as_secs_f64())
                } else {
                    String::new()
                },
                acted.what,
                completion.what,
                anchor.show(completion.at)
            );
            slots[row_slot] = Slot::Done(row);
        }
        slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(r) => r,
                Slot::Running(h) => {
                    let r = h.join().expect("flow check");
                    eprintln!(
                        "[check] {}: {}",
                        r.expectation,
                        if r.passed { "pass" } else { "FAIL" }
                    );
                    r
                }
            })
            .collect::<Vec<_>>()
    }));
    for (_, s) in streams {
        s.stop();
    }
    results
}

/// A result in table order: decided, or a flow check still watching its stream.
enum Slot<'scope> {
    Done(CheckResult),
    Running(std::thread::ScopedJoinHandle<'scope, CheckResult>),
}

/// Judges `jobs` at the same time, one thread each; results in `jobs`' order.
fn together<'a, F>(jobs: &[(usize, &'a Expectation)], judge: F) -> Vec<CheckResult>
where
    F: Fn(usize, &'a Expectation) -> Option<CheckResult> + Sync,
{
    for (i, e) in jobs {
        eprintln!("[check] {} …", e.label(*i));
    }
    let results: Vec<CheckResult> = std::thread::scope(|s| {
        let running: Vec<_> = jobs
            .iter()
            .map(|&(i, e)| {
                let judge = &judge;
                s.spawn(move || judge(i, e))
            })
            .collect();
        running
            .into_iter()
            .filter_map(|h| h.join().expect("check thread"))
            .collect()
    });
    for r in &results {
        eprintln!(
            "[check] {}: {}",
            r.expectation,
            if r.passed { "pass" } else { "FAIL" }
        );
    }
    results
}

fn never_fired(i: usize, e: &Expectation, event: &str) -> CheckResult {
    let mut r = CheckResult::new(e.label(i), e.key());
    r.summary = format!("not judged: its event {event} was not acted out");
    r
}

/// A check tied to an event that probes the lab.
fn anchored(lab: &Lab, i: usize, e: &Expectation, anchor: &Anchor) -> Option<CheckResult> {
    let label = e.label(i);
    match e {
        Expectation::Connectivity(c) => Some(checks::connectivity::check(lab, &label, c, anchor)),
        Expectation::Path(p) => Some(checks::path::check(lab, &label, p, anchor)),
        _ => None,
    }
}

/// A check tied to an event that reads a continuous flow's timestamps.
fn flow_check(
    i: usize,
    e: &Expectation,
    streams: &BTreeMap<String, Stream>,
    anchor: &Anchor,
    done: &OnceLock<Completion>,
    random_loss: f64,
) -> CheckResult {
    let label = e.label(i);
    let stream = e.flow().and_then(|f| streams.get(f));
    match (e, stream) {
        (Expectation::Failover(f), Some(s)) => continuous::failover(&label, f, s, anchor),
        (Expectation::Uninterrupted(_), Some(s)) => {
            continuous::uninterrupted(&label, s, anchor, done, random_loss)
        }
        _ => {
            let mut r = CheckResult::new(&label, e.key());
            r.summary = format!(
                "flow {} has no running stream (it needs a `rate`)",
                e.flow().unwrap_or_default()
            );
            r
        }
    }
}
