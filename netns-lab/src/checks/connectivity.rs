//! The pod-to-pod connectivity matrix: a ping and a TCP echo exchange for every ordered pair
//! of test pods, retried until the expectation's deadline.

use std::time::{Duration, Instant};

use unbounded_scenario::{Connectivity, Members};

use crate::checks::Anchor;
use crate::checks::ping::{PingOpts, ping};
use crate::lab::Lab;
use crate::report::CheckResult;
use crate::traffic::tcp_exchange;

/// Nodes a member list names (`all`, node names, or site names meaning all their nodes),
/// limited to nodes that have a test pod.
pub fn resolve(lab: &Lab, members: &Members) -> Vec<String> {
    let mut out: Vec<String> = match members {
        Members::All => lab.pods.keys().cloned().collect(),
        Members::Named(names) => lab
            .topo
            .nodes
            .iter()
            .filter(|n| names.contains(&n.name) || names.contains(&n.site))
            .map(|n| n.name.clone())
            .collect(),
    };
    out.retain(|n| lab.pods.contains_key(n));
    out
}

/// One pair: ping and TCP. `Err` names what failed.
pub fn probe_pair(lab: &Lab, from: &str, to: &str) -> Result<(), String> {
    let (src, dst) = (&lab.pods[from], &lab.pods[to]);
    let p = ping(&src.netns, dst.ip, 1, 1, PingOpts::default());
    if !p.ok() {
        return Err("ping: no reply".into());
    }
    tcp_exchange(&src.netns, dst.ip, Duration::from_secs(2)).map_err(|e| format!("tcp: {e}"))
}

/// Pairs probed at once: enough that a round fits a sub-second deadline, few enough that
/// the `ping` processes do not swamp a small machine.
const PROBES_AT_ONCE: usize = 8;

/// One pair's probe: when it began and ended, and its outcome.
type Probe = (Instant, Instant, Result<(), String>);

/// Probes every pair, several at a time.
fn probe_round(lab: &Lab, pairs: &[(String, String)]) -> Vec<Probe> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(PROBES_AT_ONCE) {
        std::thread::scope(|s| {
            let running: Vec<_> = chunk
                .iter()
                .map(|(f, t)| {
                    s.spawn(move || {
                        let began = Instant::now();
                        let outcome = probe_pair(lab, f, t);
                        (began, Instant::now(), outcome)
                    })
                })
                .collect();
            for h in running {
                out.push(h.join().expect("probe thread"));
            }
        });
    }
    out
}

/// As the simulator judges it: met at the first instant every pair is as expected, and
/// that instant must be by the anchor plus `within`. Reachable pairs are proven once each
/// (when the probe that proved the last one ended); unreachable ones must all fail in one
/// round (its start counts: that is when the unanswered probes were sent).
pub fn check(lab: &Lab, label: &str, c: &Connectivity, anchor: &Anchor) -> CheckResult {
    let mut r = CheckResult::new(label, "connectivity");
    let froms = resolve(lab, &c.from);
    let tos = resolve(lab, &c.to);
    let all: Vec<(String, String)> = froms
        .iter()
        .flat_map(|f| {
            tos.iter()
                .filter(move |t| *t != f)
                .map(move |t| (f.clone(), t.clone()))
        })
        .collect();
    let total = all.len();
    let within = c.within.as_std();
    let deadline = anchor.at + within;
    let mut pending = all.clone();
    let mut met: Option<Instant> = None;
    let mut problems = Vec::new();
    loop {
        problems.clear();
        let round = probe_round(lab, &pending);
        if c.reachable {
            let mut still = Vec::new();
            for (pair, (_, ended, outcome)) in pending.iter().zip(round) {
                match outcome {
                    Ok(()) => met = Some(met.map_or(ended, |m| m.max(ended))),
                    Err(e) => {
                        problems.push(format!("{} -> {}: {e}", pair.0, pair.1));
                        still.push(pair.clone());
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
        } else {
            let began = round.iter().map(|(b, _, _)| *b).min();
            for (pair, (_, _, outcome)) in pending.iter().zip(&round) {
                if outcome.is_ok() {
                    problems.push(format!("{} -> {}: reachable, expected not", pair.0, pair.1));
                }
            }
            if problems.is_empty() {
                met = began;
                break;
            }
        }
        if Instant::now() > deadline {
            met = None;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let on_time = met.is_some_and(|m| m <= deadline);
    r.figure("pairs", total);
    r.figure("within_ms", within.as_millis() as u64);
    if let Some(m) = met {
        r.figure("met_ms", anchor.offset(m).as_millis() as u64);
    }
    r.passed = total > 0 && on_time;
    let when = match met {
        Some(m) => format!("met at {}", anchor.show(m)),
        None => format!("not met by {}", anchor.show(deadline)),
    };
    r.summary = if c.reachable {
        format!(
            "{}/{total} pod pairs ping+TCP ok; {when} (limit {:.1} s)",
            total - pending.len(),
            within.as_secs_f64()
        )
    } else {
        format!(
            "{total} pod pairs unreachable as expected: {}; {when} (limit {:.1} s)",
            if problems.is_empty() {
                "all"
            } else {
                "not all"
            },
            within.as_secs_f64()
        )
    };
    r.details = problems;
    r
}
