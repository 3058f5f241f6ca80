//! Judging expectations against random faults: deadlines move past a fault that overlapped
//! them, transient measurements a fault overlapped are reported as not judged, and nothing a
//! fault did not touch is excused.

use std::collections::BTreeMap;
use std::time::Duration;

use unbounded_scenario::Scenario;

use super::*;
use crate::forwarding::Outcome;

const YAML: &str = r#"
topology:
  sites:
    - {name: a, underlay: [10.1.0.0/16]}
  nodes:
    - {name: a-w1, site: a, internalIP: 10.1.0.11}
    - {name: a-w2, site: a, internalIP: 10.1.0.12}
flows:
  - {name: f, from: a-w1, to: a-w2, protocol: udp, port: 5201, rate: 100}
timeline:
  - {at: 20s, name: ev, agentRestart: a-w1}
expect:
  - connectivity: {name: conn, from: all, to: all, after: ev, within: 1s}
  - failover: {name: fo, flow: f, after: ev, within: 1s}
  - uninterrupted: {name: un, flow: f, after: ev}
"#;

fn secs(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn path(delivered: bool) -> PathTrace {
    PathTrace {
        hops: vec![],
        outcome: if delivered {
            Outcome::Delivered {
                node: "a-w2".into(),
            }
        } else {
            Outcome::Dropped {
                at: "a-w1".into(),
                reason: "test".into(),
            }
        },
    }
}

/// Judges expectation `i` at each (time in ms, flow and pair delivered) sample.
fn judge(i: usize, faults: &Disturbances, samples: &[(u64, bool)]) -> ExpectationResult {
    let s = Scenario::parse("t", YAML).unwrap_or_else(|e| panic!("{e}"));
    let e = &s.expect[i];
    let mut r = ExpectationResult::new(e, i);
    let fired = BTreeMap::from([("ev".to_string(), secs(20_000))]);
    let site_of = BTreeMap::from([
        ("a-w1".to_string(), "a".to_string()),
        ("a-w2".to_string(), "a".to_string()),
    ]);
    for &(at, ok) in samples {
        let flows = BTreeMap::from([("f".to_string(), path(ok))]);
        let pairs = BTreeMap::from([(("a-w1".to_string(), "a-w2".to_string()), path(ok))]);
        let obs = Observation {
            now: secs(at),
            fired: &fired,
            flows: &flows,
            pairs: &pairs,
            site_of: &site_of,
            plaintext: &[],
            faults,
            settle: secs(30_000),
        };
        r.update(e, &obs);
    }
    r.finish();
    r
}

fn crash_during_window() -> Disturbances {
    let mut d = Disturbances::default();
    d.started("fault-0", "crash a-w2".into(), secs(20_050), false);
    d.healed("fault-0-heal", secs(25_000));
    d.observe(secs(26_000), true);
    d
}

const BROKEN_UNTIL_26S: &[(u64, bool)] = &[
    (20_100, false),
    (21_500, false),
    (24_000, false),
    (26_000, true),
    (40_000, true),
];

#[test]
fn without_a_random_fault_a_missed_deadline_fails() {
    let none = Disturbances::default();
    for i in 0..3 {
        let r = judge(i, &none, BROKEN_UNTIL_26S);
        assert_eq!(r.verdict, Verdict::Fail, "{}: {}", r.label, r.detail);
        assert!(r.relative_to.is_none());
    }
}

#[test]
fn a_random_fault_in_the_window_moves_connectivity_to_its_heal() {
    let r = judge(0, &crash_during_window(), BROKEN_UNTIL_26S);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.detail);
    assert!(
        r.detail.contains("overlapped by random fault fault-0"),
        "{}",
        r.detail
    );
    assert!(
        r.relative_to
            .as_deref()
            .is_some_and(|f| f.contains("crash a-w2"))
    );
    // Still broken 30 s after the heal: a failure even relative to the fault.
    let late = [(20_100, false), (55_100, false)];
    let r = judge(0, &crash_during_window(), &late);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.detail);
}

#[test]
fn a_failover_or_lossless_flow_overlapped_by_a_fault_is_not_judged() {
    for i in [1, 2] {
        let r = judge(i, &crash_during_window(), BROKEN_UNTIL_26S);
        assert_eq!(r.verdict, Verdict::NotJudged, "{}: {}", r.label, r.detail);
        assert!(r.detail.starts_with("not judged"), "{}", r.detail);
        assert!(r.detail.contains("fault-0"), "{}", r.detail);
    }
    // An interruption after the fault was seen recovered is the flow's own failure.
    let after = [(20_100, true), (30_000, true), (31_000, false)];
    let r = judge(2, &crash_during_window(), &after);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.detail);
}
