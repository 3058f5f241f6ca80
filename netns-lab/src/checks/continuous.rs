//! Continuous flows (a flow with a `rate`): a paced UDP stream, or one established TCP
//! connection carrying paced records. They start before the timeline, so every event
//! happens while they run, and `failover` and `uninterrupted` are judged from their
//! timestamped samples against the event's instant (see [`crate::judge`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use unbounded_scenario::{Failover, Flow, FlowProtocol};

use crate::checks::Anchor;
use crate::events::Completion;
use crate::judge::{self, Gap, TCP_STALL_ALLOWED};
use crate::lab::Lab;
use crate::report::CheckResult;
use crate::tcp_flow::TcpFlow;
use crate::traffic::UdpStream;

/// How long past a failover's deadline the check keeps watching (to see the flow is
/// flowing again, and a late recovery for the record).
const FAILOVER_MARGIN: Duration = Duration::from_secs(2);

/// Time for datagrams in flight at the end of a window to arrive before it is judged.
const SETTLE: Duration = Duration::from_millis(300);

/// The shortest `uninterrupted` window: an event that completes at once is still watched
/// this long, so the verdict rests on traffic.
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// A running continuous flow.
pub enum Stream {
    Udp(UdpStream),
    Tcp(TcpFlow),
}

impl Stream {
    /// Starts the flow between its pods: TCP flows as a TCP connection, others as UDP.
    pub fn start(lab: &Lab, f: &Flow, rate: u32) -> Result<Stream, String> {
        let (Some(src), Some(dst)) = (lab.pods.get(&f.from), lab.pods.get(&f.to)) else {
            return Err(format!("{} or {} has no test pod", f.from, f.to));
        };
        match f.protocol {
            FlowProtocol::Tcp => TcpFlow::start(&src.netns, &dst.netns, dst.ip, f.port, rate)
                .map(Stream::Tcp)
                .map_err(|e| e.to_string()),
            FlowProtocol::Udp | FlowProtocol::Icmp => {
                UdpStream::start(&src.netns, &dst.netns, dst.ip, f.port, rate)
                    .map(Stream::Udp)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Datagrams or records received so far.
    pub fn received(&self) -> u64 {
        match self {
            Stream::Udp(s) => s.received(),
            Stream::Tcp(t) => t.received(),
        }
    }

    /// `t` in the stream's own clock.
    fn offset(&self, t: Instant) -> Duration {
        let epoch = match self {
            Stream::Udp(s) => s.epoch,
            Stream::Tcp(t) => t.epoch,
        };
        t.saturating_duration_since(epoch)
    }

    /// Sorted arrival times: datagrams, or records (TCP progress).
    fn arrivals(&self) -> Vec<Duration> {
        match self {
            Stream::Udp(s) => s.arrivals(),
            Stream::Tcp(t) => t.progress(),
        }
    }

    pub fn stop(self) {
        match self {
            Stream::Udp(s) => s.stop(),
            Stream::Tcp(t) => t.stop(),
        }
    }
}

/// Starts every flow with a `rate`; a flow that cannot start is a failed check.
pub fn start_all(lab: &Lab) -> (BTreeMap<String, Stream>, Vec<CheckResult>) {
    let mut streams = BTreeMap::new();
    let mut failed = Vec::new();
    for f in &lab.scenario.flows {
        let Some(rate) = f.rate else { continue };
        match Stream::start(lab, f, rate) {
            Ok(s) => {
                streams.insert(f.name.clone(), s);
            }
            Err(e) => {
                let mut r = CheckResult::new(format!("flow {}", f.name), "flow");
                r.summary = format!("could not start the stream: {e}");
                failed.push(r);
            }
        }
    }
    (streams, failed)
}

/// The probability that the scenario's lossy links drop a datagram of `flow`: links touching
/// the source's or the destination's site, combined.
pub fn random_loss(lab: &Lab, flow: &str) -> f64 {
    let topo = &lab.scenario.topology;
    let Some(f) = lab.scenario.flows.iter().find(|f| f.name == flow) else {
        return 0.0;
    };
    let site = |n: &str| {
        topo.nodes
            .iter()
            .find(|x| x.name == n)
            .map(|x| x.site.clone())
    };
    let ends = [site(&f.from), site(&f.to)];
    let pass = topo
        .links
        .iter()
        .filter(|l| l.loss_percent > 0.0)
        .filter(|l| {
            l.sites
                .iter()
                .any(|s| ends.iter().flatten().any(|e| e == s))
        })
        .map(|l| 1.0 - l.loss_percent / 100.0)
        .product::<f64>();
    1.0 - pass
}

fn sleep_until(t: Instant) {
    if let Some(wait) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// A stream time relative to the event, signed, in seconds.
fn rel(t: Duration, event: Duration) -> String {
    format!("{:+.3} s", t.as_secs_f64() - event.as_secs_f64())
}

fn describe_gap(g: &Gap, event: Duration) -> String {
    format!(
        "{:.0} ms (event {} → {}{})",
        g.duration().as_secs_f64() * 1000.0,
        rel(g.from, event),
        rel(g.to, event),
        if g.open { ", still open" } else { "" }
    )
}

/// `failover`: the flow is restored by the event plus `within` (the simulator's verdict),
/// measured from the event's instant on the stream's own timestamps. A TCP flow must also
/// keep its connection.
pub fn failover(label: &str, f: &Failover, stream: &Stream, anchor: &Anchor) -> CheckResult {
    let mut r = CheckResult::new(label, "failover");
    let within = f.within.as_std();
    let end = anchor.at + within + FAILOVER_MARGIN;
    sleep_until(end);
    let (event, end) = (stream.offset(anchor.at), stream.offset(end));
    let rec = judge::recovery(&stream.arrivals(), event, end);
    let restored = match rec.restored_after {
        Some(t) => {
            r.figure("restored_ms", t.as_millis() as u64);
            format!("restored at {} + {:.3} s", anchor.what, t.as_secs_f64())
        }
        None => "NOT restored".into(),
    };
    r.figure("gap_ms", rec.gap.duration().as_millis() as u64);
    r.figure("within_ms", within.as_millis() as u64);
    let mut summary = format!(
        "{restored} (limit {:.3} s); longest gap {}; {}",
        within.as_secs_f64(),
        describe_gap(&rec.gap, event),
        if rec.flowing {
            "flowing"
        } else {
            "NOT flowing"
        }
    );
    let mut passed = rec.passes(within);
    match stream {
        Stream::Udp(s) => {
            let l = judge::losses(&s.datagrams(), event, end.saturating_sub(SETTLE));
            r.figure("lost", l.lost);
            summary += &format!("; {} of {} datagrams lost", l.lost, l.sent);
        }
        Stream::Tcp(t) => {
            let errors = t.errors_between(event, end);
            r.figure("resets", errors.len() as u64);
            summary += &format!("; {} connection errors", errors.len());
            r.details = errors
                .iter()
                .map(|(at, e)| format!("{}: {e}", rel(*at, event)))
                .collect();
            passed &= errors.is_empty();
        }
    }
    r.passed = passed;
    r.summary = summary;
    r
}

/// `uninterrupted`: nothing lost (UDP) or no reset and no retransmission-timeout stall (TCP)
/// from the event until its completion — the restarted agent ready again, or the event
/// acted out — with at least [`MIN_WINDOW`] watched.
pub fn uninterrupted(
    label: &str,
    stream: &Stream,
    anchor: &Anchor,
    done: &OnceLock<Completion>,
    random_loss: f64,
) -> CheckResult {
    let mut r = CheckResult::new(label, "uninterrupted");
    let completion = loop {
        if let Some(c) = done.get() {
            break c.clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let until = completion.at.max(anchor.at + MIN_WINDOW);
    sleep_until(until + SETTLE);
    let (event, until) = (stream.offset(anchor.at), stream.offset(until));
    let window = until.saturating_sub(event);
    r.figure("window_ms", window.as_millis() as u64);
    let window_text = format!(
        "window {} → + {:.2} s ({})",
        anchor.what,
        window.as_secs_f64(),
        completion.what
    );
    let gap = judge::longest_gap(&stream.arrivals(), event, until + SETTLE);
    r.figure("gap_ms", gap.duration().as_millis() as u64);
    match stream {
        Stream::Udp(s) => {
            let l = judge::losses(&s.datagrams(), event, until);
            let p = random_loss;
            r.figure("lost", l.lost);
            r.passed = completion.ok && judge::udp_uninterrupted(&l, p);
            r.summary = format!(
                "{window_text}: {} of {} datagrams lost, longest run {}, longest gap {}",
                l.lost,
                l.sent,
                l.longest_run,
                describe_gap(&gap, event)
            );
            let budget = judge::random_loss_budget(p, l.sent);
            if budget > 0 {
                r.summary += &format!(
                    "; random link loss {:.2}% allows {budget} isolated losses",
                    p * 100.0
                );
            }
            if !l.lost_at.is_empty() {
                let at: Vec<String> = l
                    .lost_at
                    .iter()
                    .map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .collect();
                r.summary += &format!(" (sent at event + {})", at.join(", "));
            }
        }
        Stream::Tcp(t) => {
            let errors = t.errors_between(event, until + SETTLE);
            let records = stream
                .arrivals()
                .iter()
                .filter(|a| **a >= event && **a <= until)
                .count();
            r.figure("resets", errors.len() as u64);
            r.figure("stall_ms", gap.duration().as_millis() as u64);
            r.figure("connections", t.connections());
            r.passed = completion.ok
                && errors.is_empty()
                && records > 0
                && gap.duration() < TCP_STALL_ALLOWED;
            r.summary = format!(
                "{window_text}: {} connection errors, longest stall {} (limit {} ms), {records} records",
                errors.len(),
                describe_gap(&gap, event),
                TCP_STALL_ALLOWED.as_millis()
            );
            r.details = errors
                .iter()
                .map(|(at, e)| format!("{}: {e}", rel(*at, event)))
                .collect();
        }
    }
    if !completion.ok {
        r.details
            .insert(0, format!("the event never completed: {}", completion.what));
    }
    r
}
