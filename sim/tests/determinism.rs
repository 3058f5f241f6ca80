//! The same seed gives a byte-identical event trace; another seed gives another one.

use std::path::PathBuf;

use sim::world::{RunConfig, run};
use unbounded_scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn same_seed_same_trace_with_random_faults() {
    let s = scenario("expressroute.yaml");
    let cfg = |seed| RunConfig {
        seed,
        random_faults: true,
        ..RunConfig::default()
    };
    let a = run(&s, cfg(11));
    let b = run(&s, cfg(11));
    assert!(
        a.trace_lines > 20,
        "the trace records the run:\n{}",
        a.trace.text()
    );
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.trace.text(), b.trace.text());
    let c = run(&s, cfg(12));
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "another seed draws other faults"
    );
}

#[test]
fn leader_loss_hands_the_lease_to_the_other_replica() {
    let s = scenario("mesh-peering.yaml");
    let r = run(&s, RunConfig::default());
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let text = r.trace.text();
    let first = text
        .lines()
        .find(|l| l.contains("acting leader: [\"controller-"))
        .expect("a leader");
    let lost = text
        .find("controllerLeaderLoss")
        .expect("the leader-loss event fired");
    let after: Vec<&str> = text[lost..]
        .lines()
        .filter(|l| l.contains("acting leader: [\""))
        .collect();
    assert!(!after.is_empty(), "nobody took over:\n{text}");
    assert_ne!(
        first.split(' ').nth(3),
        after[0].split(' ').nth(3),
        "{first} / {}",
        after[0]
    );
}
