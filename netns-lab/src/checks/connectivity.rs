//! The pod-to-pod connectivity matrix: a ping and a TCP echo exchange for every ordered pair
//! of test pods, retried until the expectation's deadline.

use std::time::{Duration, Instant};

use unbounded_scenario::{Connectivity, Members};

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

pub fn check(lab: &Lab, label: &str, c: &Connectivity) -> CheckResult {
    let mut r = CheckResult::new(label, "connectivity");
    let froms = resolve(lab, &c.from);
    let tos = resolve(lab, &c.to);
    let mut pending: Vec<(String, String)> = froms
        .iter()
        .flat_map(|f| {
            tos.iter()
                .filter(move |t| *t != f)
                .map(move |t| (f.clone(), t.clone()))
        })
        .collect();
    let total = pending.len();
    let start = Instant::now();
    let deadline = start + c.within.as_std();
    let mut last_err = Vec::new();
    loop {
        last_err.clear();
        // `pending` keeps the pairs still to be proven reachable, or (for `reachable: false`)
        // the pairs that are correctly unreachable.
        pending.retain(|(f, t)| match probe_pair(lab, f, t) {
            Ok(()) => !c.reachable,
            Err(e) => {
                if c.reachable {
                    last_err.push(format!("{f} -> {t}: {e}"));
                }
                true
            }
        });
        if !c.reachable {
            // Every pair must stay unreachable: one pass decides.
            break;
        }
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let elapsed = start.elapsed();
    r.figure("pairs", total);
    r.figure("converged_ms", elapsed.as_millis() as u64);
    if c.reachable {
        r.passed = pending.is_empty() && total > 0;
        r.summary = format!(
            "{}/{total} pod pairs ping+TCP ok (in {:.1} s, limit {:.0} s)",
            total - pending.len(),
            elapsed.as_secs_f64(),
            c.within.as_std().as_secs_f64()
        );
        r.details = last_err;
    } else {
        // Here `pending` holds the pairs that (correctly) failed.
        r.passed = pending.len() == total && total > 0;
        r.details = froms
            .iter()
            .flat_map(|f| tos.iter().filter(move |t| *t != f).map(move |t| (f, t)))
            .filter(|(f, t)| !pending.iter().any(|(a, b)| a == *f && b == *t))
            .map(|(f, t)| format!("{f} -> {t}: reachable, expected not"))
            .collect();
        r.summary = format!(
            "{}/{total} pod pairs unreachable as expected",
            pending.len()
        );
    }
    r
}
