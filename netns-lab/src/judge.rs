//! The pure part of judging a continuous flow against a timeline event, from timestamped
//! samples. All times are offsets from the flow's own epoch; the event's instant is where
//! the lab acted it out, so a deadline means what it means in the simulator: counted from
//! the event, not from when a check started looking.

use std::time::Duration;

/// A stall below this on a TCP flow is TCP repairing a lost segment by fast retransmit;
/// one reaching it means a retransmission timeout fired (Linux's minimum RTO is 200 ms),
/// i.e. the path dropped the flow for longer than a random loss does.
pub const TCP_STALL_ALLOWED: Duration = Duration::from_millis(200);

/// A stream counts as flowing when something arrived this recently.
pub const FLOWING_WITHIN: Duration = Duration::from_millis(300);

/// A stretch without arrivals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    /// The last arrival before the gap (or the window's start when none came before).
    pub from: Duration,
    /// The arrival that ended it, or the window's end when none did.
    pub to: Duration,
    /// No arrival ended the gap inside the window.
    pub open: bool,
}

impl Gap {
    pub fn duration(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// The longest stretch without an arrival in `[from, to]`: the stretch that spans `from`
/// counts from the last arrival before it (an outage that began just before the event is
/// the event's), and a stretch still running at `to` counts up to `to`. `arrivals` must be
/// sorted. This is the UDP gap and the TCP stall (time without progress) alike.
pub fn longest_gap(arrivals: &[Duration], from: Duration, to: Duration) -> Gap {
    let first_after = arrivals.partition_point(|a| *a <= from);
    let mut prev = match first_after {
        0 => from,
        i => arrivals[i - 1],
    };
    let mut best = Gap {
        from: prev,
        to: prev,
        open: false,
    };
    for a in arrivals[first_after..].iter().take_while(|a| **a <= to) {
        if a.saturating_sub(prev) > best.duration() {
            best = Gap {
                from: prev,
                to: *a,
                open: false,
            };
        }
        prev = *a;
    }
    if to.saturating_sub(prev) > best.duration() {
        best = Gap {
            from: prev,
            to,
            open: true,
        };
    }
    best
}

/// How a flow came through a fault: its longest outage after the event and when that
/// outage ended, relative to the event (the simulator's "flow restored N after the fault").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub gap: Gap,
    /// Event to the arrival that ended the longest gap; `None` while it is still open.
    pub restored_after: Option<Duration>,
    /// Something arrived in the last [`FLOWING_WITHIN`] before `end`.
    pub flowing: bool,
}

impl Recovery {
    /// The simulator's verdict: the flow is restored by the event plus `within`, and (the
    /// lab sees real traffic) still flowing when the check looks last.
    pub fn passes(&self, within: Duration) -> bool {
        self.flowing && self.restored_after.is_some_and(|r| r <= within)
    }
}

/// Judges a failover from sorted arrival times, observed up to `end`.
pub fn recovery(arrivals: &[Duration], event: Duration, end: Duration) -> Recovery {
    let gap = longest_gap(arrivals, event, end);
    let last = arrivals.iter().rev().find(|a| **a <= end);
    Recovery {
        gap,
        restored_after: (!gap.open).then(|| gap.to.saturating_sub(event)),
        flowing: last.is_some_and(|l| end.saturating_sub(*l) <= FLOWING_WITHIN),
    }
}

/// One datagram of a UDP stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub sent: Duration,
    pub received: Option<Duration>,
}

/// What a UDP stream lost among the datagrams sent in a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    pub sent: u64,
    pub lost: u64,
    /// The most consecutive datagrams lost: an outage loses a run, random link loss loses
    /// isolated datagrams.
    pub longest_run: u64,
    /// Send times of the first few lost datagrams, relative to the window's start.
    pub lost_at: Vec<Duration>,
}

/// Losses among the datagrams (in sequence order) sent in `[from, to]`.
pub fn losses(datagrams: &[Datagram], from: Duration, to: Duration) -> Losses {
    let mut l = Losses::default();
    let mut run = 0;
    for d in datagrams.iter().filter(|d| d.sent >= from && d.sent <= to) {
        l.sent += 1;
        if d.received.is_some() {
            run = 0;
            continue;
        }
        l.lost += 1;
        run += 1;
        l.longest_run = l.longest_run.max(run);
        if l.lost_at.len() < 5 {
            l.lost_at.push(d.sent.saturating_sub(from));
        }
    }
    l
}

/// How many isolated losses a window may have when the flow's links drop a fraction
/// `random_loss` of datagrams whatever the event does: 3× the expected count, plus one;
/// none on loss-free links.
pub fn random_loss_budget(random_loss: f64, sent: u64) -> u64 {
    if random_loss > 0.0 {
        (3.0 * (random_loss * sent as f64)).ceil() as u64 + 1
    } else {
        0
    }
}

/// `uninterrupted` on a UDP stream: nothing lost, or on lossy links only isolated losses
/// within the random-loss budget (an outage loses a run of two or more).
pub fn udp_uninterrupted(l: &Losses, random_loss: f64) -> bool {
    l.sent > 0
        && (l.lost == 0
            || (l.longest_run <= 1 && l.lost <= random_loss_budget(random_loss, l.sent)))
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
