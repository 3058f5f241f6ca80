//! Deliberate bugs behind the test-only switch are caught by the invariants, and the same
//! runs without the bug pass the invariants.

use std::path::PathBuf;

use sim::bugs::Bugs;
use sim::world::{RunConfig, run};
use unbounded_scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn ecmp_ignoring_health_is_caught_after_a_gateway_crash() {
    let s = scenario("gateway-failover.yaml");
    let clean = run(&s, RunConfig::default());
    assert!(clean.violation.is_none(), "{:?}", clean.violation);

    let bugs = Bugs {
        ecmp_ignores_health: true,
        ..Bugs::default()
    };
    let buggy = run(
        &s,
        RunConfig {
            bugs,
            ..RunConfig::default()
        },
    );
    let v = buggy
        .violation
        .expect("the stale-route invariant must fire");
    assert!(v.message.contains("still routes"), "{}", v.message);
    // The gateway crashes at 20 s; the violation is found within a second of detection.
    assert!(
        v.at.as_secs_f64() > 20.0 && v.at.as_secs_f64() < 22.0,
        "{:?}",
        v.at
    );
    assert_eq!(v.seed, 1);
    assert!(!v.trace_tail.is_empty());
    assert!(!buggy.passed);
}

#[test]
fn allocator_reusing_blocks_is_caught_when_a_node_joins() {
    let s = scenario("nat-edge.yaml");
    let clean = run(&s, RunConfig::default());
    assert!(clean.violation.is_none(), "{:?}", clean.violation);

    let bugs = Bugs {
        allocator_reuses_blocks: true,
        ..Bugs::default()
    };
    let buggy = run(
        &s,
        RunConfig {
            bugs,
            ..RunConfig::default()
        },
    );
    let v = buggy.violation.expect("the overlap invariant must fire");
    assert!(v.message.contains("overlapping pod CIDRs"), "{}", v.message);
    // edge-w3 joins at 50 s and is handed a block another node holds.
    assert!(v.at.as_secs() >= 50, "{:?}", v.at);
}
