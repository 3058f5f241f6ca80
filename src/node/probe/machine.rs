//! The pure probe state machine of one peer, BFD-like. Time is an input (`now` is any
//! monotonic clock as a [`Duration`] since an arbitrary origin), so the simulator drives it
//! in virtual time and the agent with `Instant`.
//!
//! A new prober starts `Up`: an agent restart must not pull healthy peers out of ECMP before
//! it has had a chance to hear from them. A peer that sends no reply for
//! `multiplier × receive_interval` goes `Down`; replies then make it `Recovering`, and it
//! returns `Up` only after replying continuously for the hold-down, which doubles with each
//! flap (up to [`MAX_PENALTY_SHIFT`] doublings) and resets after a long stable period.

use std::time::Duration;

use super::wire::{ProbeKind, ProbePacket};

/// Most doublings of the hold-down a flapping peer accumulates.
pub const MAX_PENALTY_SHIFT: u32 = 3;
/// Replies accepted for this many most recent sequence numbers.
const SEQ_WINDOW: u64 = 64;

/// Timers of one probed link (from the governing scope's `healthCheckSettings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTimers {
    pub transmit_interval: Duration,
    pub receive_interval: Duration,
    pub multiplier: u32,
    /// Continuous good time required before a recovered peer rejoins ECMP (first flap).
    pub hold_down: Duration,
}

impl ProbeTimers {
    /// Timers with the hold-down equal to the detect window.
    pub fn new(transmit_interval: Duration, receive_interval: Duration, multiplier: u32) -> Self {
        let mut t = ProbeTimers {
            transmit_interval,
            receive_interval,
            multiplier: multiplier.max(1),
            hold_down: Duration::ZERO,
        };
        t.hold_down = t.detect_window();
        t
    }

    /// How long without replies before the peer is declared down.
    pub fn detect_window(&self) -> Duration {
        self.receive_interval * self.multiplier.max(1)
    }
}

/// Whether the peer carries traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In ECMP.
    Up,
    /// Replying again, waiting out the hold-down; not in ECMP.
    Recovering { since: Duration },
    /// Silent for the detect window; not in ECMP.
    Down,
}

impl Health {
    pub fn carries_traffic(&self) -> bool {
        matches!(self, Health::Up)
    }
}

/// Something the shell must do or report after feeding the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// Send this request to the peer's health endpoint now.
    Send(ProbePacket),
    /// The peer entered (`true`) or left (`false`) ECMP.
    TrafficChanged(bool),
}

/// A reply the machine refuses (counted and dropped by the shell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnexpectedReply {
    #[error("probe packet is a request where a reply was expected")]
    NotAReply,
    #[error("probe reply sequence {0} was never sent or is too old")]
    UnknownSequence(u64),
}

/// Probe state of one peer.
#[derive(Clone, Debug)]
pub struct Prober {
    timers: ProbeTimers,
    health: Health,
    last_reply: Duration,
    next_send: Duration,
    next_seq: u64,
    penalty_shift: u32,
    up_since: Duration,
}

impl Prober {
    pub fn new(timers: ProbeTimers, now: Duration) -> Self {
        Prober {
            timers,
            health: Health::Up,
            last_reply: now,
            next_send: now,
            next_seq: 1,
            penalty_shift: 0,
            up_since: now,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn timers(&self) -> ProbeTimers {
        self.timers
    }

    /// New timers (a scope's settings changed); state is kept.
    pub fn set_timers(&mut self, timers: ProbeTimers) {
        self.timers = timers;
    }

    /// Hold-down a recovering peer has to wait out now.
    pub fn current_hold_down(&self) -> Duration {
        self.timers.hold_down * (1u32 << self.penalty_shift)
    }

    /// When the shell should call [`Prober::on_tick`] next at the latest.
    pub fn next_deadline(&self) -> Duration {
        let detect = self.last_reply + self.timers.detect_window();
        match self.health {
            Health::Up => self.next_send.min(detect),
            Health::Recovering { since } => self
                .next_send
                .min(detect)
                .min(since + self.current_hold_down()),
            Health::Down => self.next_send,
        }
    }

    /// Advances timers: sends due probes, declares the peer down or back up.
    pub fn on_tick(&mut self, now: Duration) -> Vec<ProbeEvent> {
        let mut events = Vec::new();
        if now >= self.next_send {
            events.push(ProbeEvent::Send(ProbePacket::request(
                self.next_seq,
                now.as_nanos() as u64,
            )));
            self.next_seq += 1;
            self.next_send = now + self.timers.transmit_interval;
        }
        let silent = now.saturating_sub(self.last_reply) > self.timers.detect_window();
        match self.health {
            Health::Up if silent => {
                self.health = Health::Down;
                // A peer that was up only briefly is flapping: lengthen its next hold-down.
                if now.saturating_sub(self.up_since) < self.current_hold_down() * 4 {
                    self.penalty_shift = (self.penalty_shift + 1).min(MAX_PENALTY_SHIFT);
                } else {
                    self.penalty_shift = 0;
                }
                events.push(ProbeEvent::TrafficChanged(false));
            }
            Health::Recovering { .. } if silent => self.health = Health::Down,
            Health::Recovering { since } if now >= since + self.current_hold_down() => {
                self.health = Health::Up;
                self.up_since = now;
                events.push(ProbeEvent::TrafficChanged(true));
            }
            _ => {}
        }
        events
    }

    /// Feeds a decoded reply. Returns the round-trip time on success.
    pub fn on_reply(
        &mut self,
        now: Duration,
        packet: &ProbePacket,
    ) -> Result<Duration, UnexpectedReply> {
        if packet.kind != ProbeKind::Reply {
            return Err(UnexpectedReply::NotAReply);
        }
        let newest = self.next_seq.saturating_sub(1);
        if packet.seq == 0 || packet.seq > newest || newest - packet.seq >= SEQ_WINDOW {
            return Err(UnexpectedReply::UnknownSequence(packet.seq));
        }
        self.last_reply = self.last_reply.max(now);
        if self.health == Health::Down {
            self.health = Health::Recovering { since: now };
        }
        Ok(now.saturating_sub(Duration::from_nanos(packet.timestamp_ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timers() -> ProbeTimers {
        ProbeTimers::new(100 * MS, 100 * MS, 3)
    }

    /// Runs the machine in 10 ms steps; `answers(now)` says whether the peer replies.
    fn run(
        p: &mut Prober,
        from: Duration,
        to: Duration,
        answers: impl Fn(Duration) -> bool,
    ) -> Vec<(Duration, bool)> {
        let mut changes = Vec::new();
        let mut now = from;
        while now < to {
            for ev in p.on_tick(now) {
                match ev {
                    ProbeEvent::Send(req) if answers(now) => {
                        p.on_reply(now + MS, &req.reply()).unwrap();
                    }
                    ProbeEvent::TrafficChanged(up) => changes.push((now, up)),
                    ProbeEvent::Send(_) => {}
                }
            }
            now += 10 * MS;
        }
        changes
    }

    #[test]
    fn healthy_peer_stays_up_and_rtt_is_measured() {
        let mut p = Prober::new(timers(), Duration::ZERO);
        assert!(run(&mut p, Duration::ZERO, 2000 * MS, |_| true).is_empty());
        assert_eq!(p.health(), Health::Up);
        let ev = p.on_tick(2000 * MS);
        let ProbeEvent::Send(req) = ev[0] else {
            panic!("expected a send, got {ev:?}")
        };
        assert_eq!(p.on_reply(2003 * MS, &req.reply()), Ok(3 * MS));
    }

    #[test]
    fn silent_peer_goes_down_within_detect_window() {
        let mut p = Prober::new(timers(), Duration::ZERO);
        run(&mut p, Duration::ZERO, 1000 * MS, |_| true);
        let changes = run(&mut p, 1000 * MS, 2000 * MS, |_| false);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (at, up) = changes[0];
        assert!(!up);
        // Last reply came at ~1000 ms (probe sent at 900 + answered); detect window 300 ms.
        assert!(
            at <= 1000 * MS + timers().detect_window() + 20 * MS,
            "down at {at:?}"
        );
        assert!(at > 1000 * MS + 150 * MS, "declared down too early: {at:?}");
    }

    #[test]
    fn recovered_peer_returns_only_after_hold_down() {
        let mut p = Prober::new(timers(), Duration::ZERO);
        run(&mut p, Duration::ZERO, 2000 * MS, |_| true);
        run(&mut p, 2000 * MS, 3000 * MS, |_| false);
        assert_eq!(p.health(), Health::Down);
        let changes = run(&mut p, 3000 * MS, 5000 * MS, |_| true);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (at, up) = changes[0];
        assert!(up);
        assert!(
            at >= 3000 * MS + timers().hold_down,
            "back too early: {at:?}"
        );
    }

    #[test]
    fn flapping_peer_is_held_down_longer_each_time() {
        let mut p = Prober::new(timers(), Duration::ZERO);
        run(&mut p, Duration::ZERO, 2000 * MS, |_| true);
        let mut delays = Vec::new();
        let mut now = 2000 * MS;
        for _ in 0..3 {
            // Silent until declared down.
            while p.health() != Health::Down {
                p.on_tick(now);
                now += 10 * MS;
            }
            // Answering again: measure how long until it carries traffic.
            let answering_from = now;
            while p.health() != Health::Up {
                for ev in p.on_tick(now) {
                    if let ProbeEvent::Send(req) = ev {
                        p.on_reply(now, &req.reply()).unwrap();
                    }
                }
                now += 10 * MS;
            }
            delays.push(now - answering_from);
        }
        let hold = timers().hold_down;
        assert!(delays[0] >= hold && delays[0] < hold * 2, "{delays:?}");
        assert!(
            delays[1] >= hold * 2,
            "second flap not penalised: {delays:?}"
        );
        assert!(
            delays[2] >= hold * 4,
            "third flap not penalised: {delays:?}"
        );
    }

    #[test]
    fn unknown_and_request_packets_are_refused() {
        let mut p = Prober::new(timers(), Duration::ZERO);
        let ev = p.on_tick(Duration::ZERO);
        let ProbeEvent::Send(req) = ev[0] else {
            panic!("expected a send")
        };
        assert_eq!(p.on_reply(MS, &req), Err(UnexpectedReply::NotAReply));
        let mut forged = req.reply();
        forged.seq = 99;
        assert_eq!(
            p.on_reply(MS, &forged),
            Err(UnexpectedReply::UnknownSequence(99))
        );
    }
}
