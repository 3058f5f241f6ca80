use rstest::rstest;

use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn held_by(holder: &str, renew: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(holder.into()),
        acquire_time: Some(s(0)),
        renew_time: Some(s(renew)),
        lease_duration: Some(s(15)),
        transitions: 3,
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Create,
    Acquire(u32),
    Renew(u32),
    StandBy(u64),
}

#[rstest]
#[case::no_lease(None, 0, 100, Want::Create)]
#[case::free(Some(LeaseRecord { holder: None, ..held_by("x", 0) }), 0, 1, Want::Acquire(4))]
#[case::empty_holder(Some(held_by("", 0)), 0, 1, Want::Acquire(4))]
#[case::mine(Some(held_by("me", 90)), 90, 95, Want::Renew(3))]
#[case::mine_even_if_expired(Some(held_by("me", 0)), 0, 100, Want::Renew(3))]
#[case::other_live(Some(held_by("other", 0)), 10, 20, Want::StandBy(22))]
#[case::other_live_retry_capped_at_expiry(Some(held_by("other", 0)), 10, 24, Want::StandBy(25))]
#[case::other_expired(Some(held_by("other", 0)), 10, 25, Want::Acquire(4))]
#[case::other_clock_skewed_far_ahead(Some(held_by("other", 1_000_000)), 10, 25, Want::Acquire(4))]
#[case::other_clock_skewed_far_behind(
    Some(held_by("other", 0)),
    1_000,
    1_010,
    Want::StandBy(1_012)
)]
fn decisions(
    #[case] record: Option<LeaseRecord>,
    #[case] seen_at: u64,
    #[case] now: u64,
    #[case] want: Want,
) {
    let obs = LeaseObservation {
        record,
        seen_at: s(seen_at),
    };
    let got = decide(s(now), &obs, "me", &LeaseTiming::default());
    let as_want = match &got {
        LeaseDecision::Create(r) => {
            assert_eq!(r.transitions, 0);
            Want::Create
        }
        LeaseDecision::Acquire(r) => Want::Acquire(r.transitions),
        LeaseDecision::Renew(r) => Want::Renew(r.transitions),
        LeaseDecision::StandBy { retry_at, holder } => {
            assert_eq!(holder, "other");
            Want::StandBy(retry_at.as_secs())
        }
    };
    assert_eq!(as_want, want);
    if let Some(r) = got.record() {
        assert_eq!(r.holder.as_deref(), Some("me"));
        assert_eq!(r.renew_time, Some(s(now)));
    }
}

#[test]
fn observation_clock_restarts_only_on_change() {
    let mut obs = LeaseObservation::default();
    obs.observe(s(5), Some(held_by("other", 1)));
    obs.observe(s(9), Some(held_by("other", 1)));
    assert_eq!(
        obs.seen_at,
        s(5),
        "unchanged record keeps its first-seen time"
    );
    obs.observe(s(12), Some(held_by("other", 2)));
    assert_eq!(obs.seen_at, s(12), "a renewal restarts the clock");
}

#[test]
fn racing_replicas_write_distinct_records() {
    // Both see the same expired lease: both decide to acquire, and only the conditional write
    // (resourceVersion) picks one. The decision itself carries different holders.
    let obs = LeaseObservation {
        record: Some(held_by("old", 0)),
        seen_at: s(0),
    };
    let a = decide(s(30), &obs, "a", &LeaseTiming::default());
    let b = decide(s(30), &obs, "b", &LeaseTiming::default());
    assert_ne!(a.record(), b.record());
}

#[rstest]
#[case::fresh(0, 5, true)]
#[case::at_deadline(0, 10, false)]
#[case::past(0, 11, false)]
fn leader_steps_down_after_renew_deadline(
    #[case] renewed: u64,
    #[case] now: u64,
    #[case] leading: bool,
) {
    assert_eq!(
        still_leading(s(now), s(renewed), &LeaseTiming::default()),
        leading
    );
}

#[test]
fn release_only_what_we_hold() {
    let mine = held_by("me", 3);
    let released = release(&mine, "me", s(4)).unwrap();
    assert_eq!(released.holder, None);
    assert_eq!(released.transitions, 3);
    assert_eq!(release(&held_by("other", 3), "me", s(4)), None);
}
