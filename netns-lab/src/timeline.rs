//! Runs a scenario on a built lab: the underlay sanity checks, the continuous flows, the
//! expectations that hold from the start, then the timeline with the expectations anchored
//! to its events.
//!
//! Judged as the simulator judges: a deadline counts from its anchor (the run's start, or
//! the instant the lab acted the event out), and the expectations sharing an anchor are
//! judged at the same time, each on its own thread, so a slow one never delays another.

use std::collections::BTreeMap;
use std::sync::OnceLock;
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
    for ev in &lab.scenario.timeline.clone() {
        if let Some(wait) = (t0 + ev.at.as_std()).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let label = ev.label();
        let tied: Vec<(usize, &Expectation)> = expectations
            .iter()
            .enumerate()
            .filter(|(_, e)| e.after() == Some(label.as_str()) || e.after() == ev.name.as_deref())
            .collect();
        let mut row = CheckResult::new(format!("event {label}"), "event");
        let acted = match events::apply(lab, &mut state, ev.name.as_deref(), &ev.event) {
            Ok(a) => a,
            Err(e) => {
                row.summary = e.to_string();
                results.push(row);
                results.extend(tied.iter().map(|(i, e)| never_fired(*i, e, &label)));
                continue;
            }
        };
        let acted_out = Instant::now();
        let anchor = Anchor {
            at: acted.at,
            what: ev.name.clone().unwrap_or_else(|| label.clone()),
        };
        let lab: &Lab = lab;
        let done: OnceLock<Completion> = OnceLock::new();
        // The checks start at once (their deadlines run from `acted.at`); the completion is
        // watched meanwhile, for the `uninterrupted` windows that end with it.
        let (completion, tied_results) = std::thread::scope(|s| {
            let checks = s.spawn(|| {
                together(&tied, |i, e| {
                    anchored(lab, i, e, &streams, &anchor, &done)
                })
            });
            let c = events::completion(lab, &acted, acted_out);
            let _ = done.set(c.clone());
            (c, checks.join().expect("event checks"))
        });
        row.passed = completion.ok;
        row.figure("at_ms", acted.at.duration_since(t0).as_millis() as u64);
        row.figure(
            "completed_ms",
            anchor.offset(completion.at).as_millis() as u64,
        );
        row.summary = format!(
            "at {:.1} s: {}; {} at {}",
            acted.at.duration_since(t0).as_secs_f64(),
            acted.what,
            completion.what,
            anchor.show(completion.at)
        );
        results.push(row);
        results.extend(tied_results);
    }
    for (_, s) in streams {
        s.stop();
    }
    results
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

fn anchored(
    lab: &Lab,
    i: usize,
    e: &Expectation,
    streams: &BTreeMap<String, Stream>,
    anchor: &Anchor,
    done: &OnceLock<Completion>,
) -> Option<CheckResult> {
    let label = e.label(i);
    let no_stream = |kind: &str, flow: &str| {
        let mut r = CheckResult::new(&label, kind);
        r.summary = format!("flow {flow} has no running stream (it needs a `rate`)");
        r
    };
    Some(match e {
        Expectation::Connectivity(c) => checks::connectivity::check(lab, &label, c, anchor),
        Expectation::Path(p) => checks::path::check(lab, &label, p, anchor),
        Expectation::Failover(f) => match streams.get(&f.flow) {
            Some(s) => continuous::failover(&label, f, s, anchor),
            None => no_stream("failover", &f.flow),
        },
        Expectation::Uninterrupted(u) => match streams.get(&u.flow) {
            Some(s) => continuous::uninterrupted(lab, &label, u, s, anchor, done),
            None => no_stream("uninterrupted", &u.flow),
        },
        Expectation::NoPlaintext(_) | Expectation::PathMtu(_) => return None,
    })
}
