//! A random-fault run judges the scenario's expectations, not only the invariants: a wrong
//! expectation fails the seed, and the scenario as shipped passes the same seed.

use std::path::PathBuf;

use sim::expect::Verdict;
use sim::world::{RunConfig, run};
use unbounded_scenario::Scenario;

fn gateway_failover_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/gateway-failover.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn random(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        random_faults: true,
        ..RunConfig::default()
    }
}

#[test]
fn a_wrong_path_expectation_fails_a_random_fault_seed() {
    let shipped = Scenario::parse("gateway-failover", &gateway_failover_text()).unwrap();
    let ok = run(&shipped, random(5));
    assert!(ok.passed, "{}", sim::report::table(&ok));
    assert!(!ok.random_faults_applied.is_empty(), "seed 5 draws faults");
    // Steady-state expectations are judged again after the last heal.
    assert!(
        ok.expectations
            .iter()
            .any(|e| e.label == "stream-path after last heal" && e.verdict == Verdict::Pass),
        "{}",
        sim::report::table(&ok)
    );

    let text = gateway_failover_text().replace(
        "{to: remote-gw1, encap: VXLAN}",
        "{to: remote-gw1, encap: WireGuard}",
    );
    let wrong = Scenario::parse("gateway-failover-wrong", &text).unwrap();
    let r = run(&wrong, random(5));
    assert!(!r.passed, "a wrong path must fail the seed");
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let path = r
        .expectations
        .iter()
        .find(|e| e.label == "stream-path")
        .expect("the path expectation is reported");
    assert_eq!(path.verdict, Verdict::Fail, "{}", path.detail);
}
