//! Runs a scenario on a built lab: the underlay sanity checks, the expectations that hold
//! from the start, continuous flows, then the timeline with the expectations anchored to its
//! events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use unbounded_scenario::{Expectation, FlowProtocol};

use crate::checks;
use crate::events;
use crate::lab::Lab;
use crate::report::CheckResult;
use crate::traffic::UdpStream;

/// Runs everything and returns one result per check.
pub fn run(lab: &mut Lab) -> Vec<CheckResult> {
    let mut results = checks::underlay_checks(lab);
    let start = Instant::now();

    // Continuous flows, started first so events happen while they run.
    let mut streams: BTreeMap<String, (UdpStream, u32)> = BTreeMap::new();
    for f in lab.scenario.flows.iter().filter(|f| f.rate.is_some()) {
        let rate = f.rate.expect("filtered");
        let (Some(src), Some(dst)) = (lab.pods.get(&f.from), lab.pods.get(&f.to)) else {
            continue;
        };
        if f.protocol == FlowProtocol::Tcp {
            tracing::warn!(flow = %f.name, "continuous TCP flows are measured as a UDP stream");
        }
        match UdpStream::start(&src.netns, &dst.netns, dst.ip, f.port, rate) {
            Ok(s) => {
                streams.insert(f.name.clone(), (s, rate));
            }
            Err(e) => {
                let mut r = CheckResult::new(format!("flow {}", f.name), "flow");
                r.summary = format!("could not start the stream: {e}");
                results.push(r);
            }
        }
    }

    let expectations = lab.scenario.expect.clone();
    for (i, e) in expectations.iter().enumerate() {
        eprintln!("[check] {} …", e.label(i));
        if let Some(r) = checks::run_static(lab, i, e) {
            eprintln!(
                "[check] {}: {}",
                r.expectation,
                if r.passed { "pass" } else { "FAIL" }
            );
            results.push(r);
        }
    }

    // Make sure every stream flows before faults are injected (else a gap is meaningless).
    for (name, (s, _)) in &streams {
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

    let timeline = lab.scenario.timeline.clone();
    // Event times are offsets from the timeline's start, which begins now (after the checks
    // that hold from the start), so slow checks do not eat into a fault's settling time.
    let t0 = Instant::now();
    let mut event_at: BTreeMap<String, Duration> = BTreeMap::new();
    let mut state = events::EventState::default();
    for ev in &timeline {
        let due = t0 + ev.at.as_std();
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let label = ev.label();
        // Anchor in each stream's own clock.
        let now_stream = streams.values().next().map(|(s, _)| s.now());
        let applied = events::apply(lab, &mut state, ev.name.as_deref(), &ev.event);
        let mut r = CheckResult::new(format!("event {label}"), "event");
        match applied {
            Ok(what) => {
                r.passed = true;
                r.summary = format!("at {:.1} s: {what}", t0.elapsed().as_secs_f64());
            }
            Err(e) => r.summary = e.to_string(),
        }
        results.push(r);
        if let Some(t) = now_stream {
            event_at.insert(label.clone(), t);
        }
        if let Some(name) = &ev.name {
            event_at
                .entry(name.clone())
                .or_insert(now_stream.unwrap_or_default());
        }
        for (i, e) in expectations.iter().enumerate() {
            if e.after() != Some(label.as_str()) && e.after() != ev.name.as_deref() {
                continue;
            }
            if let Some(r) = anchored(lab, i, e, &streams, event_at.get(&label).copied()) {
                results.push(r);
            }
        }
    }
    for (_, (s, _)) in streams {
        s.stop();
    }
    let _ = start;
    results
}

/// The probability that the scenario's lossy links drop a datagram of `flow`: links touching
/// the source's or the destination's site, combined.
fn random_loss(lab: &Lab, flow: &str) -> f64 {
    let topo = &lab.scenario.topology;
    let Some(f) = lab.scenario.flows.iter().find(|f| f.name == flow) else {
        return 0.0;
    };
    let site = |n: &str| {
        topo.nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| x.site.clone())
    };
    let ends = [site(&f.from), site(&f.to)];
    let pass = topo
        .links
        .iter()
        .filter(|l| l.loss_percent > 0.0)
        .filter(|l| {
            l.sites
                .iter()
                .any(|s| ends.iter().flatten().any(|e| e == s))
        })
        .map(|l| 1.0 - l.loss_percent / 100.0)
        .product::<f64>();
    1.0 - pass
}

fn anchored(
    lab: &Lab,
    i: usize,
    e: &Expectation,
    streams: &BTreeMap<String, (UdpStream, u32)>,
    at: Option<Duration>,
) -> Option<CheckResult> {
    let label = e.label(i);
    match e {
        Expectation::Connectivity(c) => {
            let mut c = c.clone();
            c.after = None;
            Some(checks::connectivity::check(lab, &label, &c))
        }
        Expectation::Path(p) => {
            let mut p = p.clone();
            p.after = None;
            Some(checks::path::check(lab, &label, &p))
        }
        Expectation::Failover(f) => {
            let mut r = CheckResult::new(&label, "failover");
            let (Some((s, rate)), Some(at)) = (streams.get(&f.flow), at) else {
                r.summary = format!("flow {} has no running stream", f.flow);
                return Some(r);
            };
            // Watch for the allowed time plus margin, then measure the worst gap.
            std::thread::sleep(f.within.as_std() + Duration::from_secs(2));
            let st = s.stats_since(at, *rate);
            let recovered = s.received();
            std::thread::sleep(Duration::from_millis(300));
            let flowing = s.received() > recovered;
            r.figure("gap_ms", st.max_gap_ms);
            r.figure("lost", st.lost_after);
            r.passed = flowing && st.max_gap_ms <= f.within.as_std().as_secs_f64() * 1000.0;
            r.summary = format!(
                "longest gap {:.0} ms (limit {} ms), {} datagrams lost, {}",
                st.max_gap_ms,
                f.within.as_millis(),
                st.lost_after,
                if flowing {
                    "flowing again"
                } else {
                    "NOT flowing"
                }
            );
            Some(r)
        }
        Expectation::Uninterrupted(u) => {
            let mut r = CheckResult::new(&label, "uninterrupted");
            let (Some((s, rate)), Some(at)) = (streams.get(&u.flow), at) else {
                r.summary = format!("flow {} has no running stream", u.flow);
                return Some(r);
            };
            std::thread::sleep(Duration::from_secs(3));
            let st = s.stats_since(at, *rate);
            r.figure("gap_ms", st.max_gap_ms);
            r.figure("lost", st.lost_after);
            // Links the scenario makes lossy drop isolated datagrams at random whatever the
            // event does; those are allowed (3x the expected count, plus one), an outage is
            // not: a run of two or more consecutive losses fails.
            let p = random_loss(lab, &u.flow);
            let expected_random = p * st.expected as f64;
            let budget = if p > 0.0 {
                (3.0 * expected_random).ceil() as u64 + 1
            } else {
                0
            };
            r.passed = st.received > 0
                && st.lost_after <= budget
                && (st.lost_after == 0 || st.longest_loss_run <= 1);
            r.summary = format!(
                "{} datagrams lost after the event, longest gap {:.0} ms",
                st.lost_after, st.max_gap_ms
            );
            if budget > 0 {
                r.summary += &format!(
                    "; random link loss {:.2}% allows {budget} isolated losses in {} datagrams, longest loss run {}",
                    p * 100.0,
                    st.expected,
                    st.longest_loss_run
                );
            }
            if !st.lost_at.is_empty() {
                let at: Vec<String> = st
                    .lost_at
                    .iter()
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .collect();
                r.summary += &format!(" (sent at event + {})", at.join(", "));
            }
            Some(r)
        }
        Expectation::NoPlaintext(_) | Expectation::PathMtu(_) => None,
    }
}
