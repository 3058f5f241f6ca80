use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Arrivals every `step` ms over `[from, to)`, leaving out `(hole_from, hole_to)`.
fn paced(from: u64, to: u64, step: u64, hole: Option<(u64, u64)>) -> Vec<Duration> {
    (from..to)
        .step_by(step as usize)
        .filter(|t| hole.is_none_or(|(a, b)| *t <= a || *t >= b))
        .map(ms)
        .collect()
}

#[test]
fn gap_spanning_the_event_counts_from_the_last_arrival_before_it() {
    // 1 ms spacing; nothing arrives from 995 ms to 1250 ms; the event is at 1000 ms.
    let arrivals = paced(0, 3000, 1, Some((995, 1250)));
    let g = longest_gap(&arrivals, ms(1000), ms(3000));
    assert_eq!((g.from, g.to, g.open), (ms(995), ms(1250), false));
    assert_eq!(g.duration(), ms(255));
}

#[test]
fn gaps_before_the_window_are_ignored() {
    let arrivals = paced(0, 3000, 1, Some((200, 900)));
    let g = longest_gap(&arrivals, ms(1000), ms(3000));
    assert_eq!(g.duration(), ms(1));
}

#[test]
fn a_stream_that_stopped_has_an_open_gap_to_the_end() {
    let arrivals = paced(0, 1500, 10, None);
    let g = longest_gap(&arrivals, ms(1000), ms(4000));
    assert!(g.open);
    assert_eq!((g.from, g.to), (ms(1490), ms(4000)));
    let r = recovery(&arrivals, ms(1000), ms(4000));
    assert_eq!(r.restored_after, None);
    assert!(!r.flowing);
    assert!(!r.passes(ms(1000)));
}

#[test]
fn no_arrivals_at_all_is_one_open_gap_over_the_window() {
    let g = longest_gap(&[], ms(1000), ms(2000));
    assert_eq!((g.from, g.to, g.open), (ms(1000), ms(2000), true));
}

#[test]
fn recovery_is_measured_from_the_event_not_the_gap_start() {
    // The outage begins 5 ms before the event (in-flight packets) and ends 240 ms after it.
    let arrivals = paced(0, 5000, 1, Some((995, 1240)));
    let r = recovery(&arrivals, ms(1000), ms(5000));
    assert_eq!(r.gap.duration(), ms(245));
    assert_eq!(r.restored_after, Some(ms(240)));
    assert!(r.flowing);
    assert!(r.passes(ms(1000)));
    assert!(
        !r.passes(ms(200)),
        "restored 240 ms after the event misses a 200 ms limit"
    );
}

#[test]
fn a_late_recovery_fails_even_when_the_stream_flows_again() {
    let arrivals = paced(0, 5000, 1, Some((1000, 2600)));
    let r = recovery(&arrivals, ms(1000), ms(5000));
    assert_eq!(r.restored_after, Some(ms(1600)));
    assert!(r.flowing);
    assert!(!r.passes(ms(1000)));
}

#[test]
fn a_flow_that_never_broke_is_restored_at_once() {
    let arrivals = paced(0, 5000, 10, None);
    let r = recovery(&arrivals, ms(1000), ms(3000));
    assert_eq!(r.gap.duration(), ms(10));
    assert!(r.restored_after.is_some_and(|t| t <= ms(10)));
    assert!(r.passes(ms(100)));
}

#[test]
fn tcp_stall_is_the_longest_time_without_progress() {
    // Records every 10 ms; a retransmission timeout holds progress for 230 ms after 2.5 s.
    let progress = paced(0, 6000, 10, Some((2500, 2730)));
    let stall = longest_gap(&progress, ms(2000), ms(4000));
    assert_eq!(stall.duration(), ms(230));
    assert!(stall.duration() > TCP_STALL_ALLOWED);
    // A fast retransmit costs about one round trip: allowed.
    let progress = paced(0, 6000, 10, Some((2500, 2560)));
    assert!(longest_gap(&progress, ms(2000), ms(4000)).duration() < TCP_STALL_ALLOWED);
}

fn stream(n: u64, lost: &[u64]) -> Vec<Datagram> {
    (0..n)
        .map(|i| Datagram {
            sent: ms(i * 10),
            received: (!lost.contains(&i)).then(|| ms(i * 10 + 20)),
        })
        .collect()
}

#[test]
fn losses_count_only_the_window_and_find_runs() {
    let d = stream(100, &[3, 40, 41, 42, 70]);
    let l = losses(&d, ms(300), ms(800));
    assert_eq!((l.sent, l.lost, l.longest_run), (51, 4, 3));
    assert_eq!(l.lost_at, vec![ms(100), ms(110), ms(120), ms(400)]);
    assert!(!udp_uninterrupted(&l, 0.01), "a run of three is an outage");
}

#[test]
fn isolated_random_losses_pass_only_on_lossy_links_and_within_budget() {
    let d = stream(1000, &[100, 500]);
    let l = losses(&d, ms(0), ms(10_000));
    assert_eq!((l.lost, l.longest_run), (2, 1));
    assert!(
        !udp_uninterrupted(&l, 0.0),
        "loss-free links: any loss fails"
    );
    // 0.1% of 1000 → 1 expected, budget 3 × 1 + 1 = 4.
    assert_eq!(random_loss_budget(0.001, 1000), 4);
    assert!(udp_uninterrupted(&l, 0.001));
    let many = stream(1000, &[10, 100, 200, 300, 400, 500]);
    assert!(!udp_uninterrupted(&losses(&many, ms(0), ms(10_000)), 0.001));
}

#[test]
fn an_empty_window_is_not_a_pass() {
    let d = stream(10, &[]);
    assert!(!udp_uninterrupted(&losses(&d, ms(500), ms(600)), 0.0));
}
