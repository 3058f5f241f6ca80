//! Scenario expectations, judged continuously in virtual time against the forwarding model.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;
use unbounded_net::core::Encap as PlanEncap;
use unbounded_scenario::{Encap, Expectation, Members, Scenario};

use crate::disturb::Disturbances;
use crate::forwarding::PathTrace;
use crate::trace::fmt_time;

/// Verdict of one expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Pending,
    Pass,
    Fail,
    /// A random fault overlapped what the expectation measures (a failover's gap, an
    /// uninterrupted flow): reported with the fault, never counted as a pass or dropped.
    NotJudged,
}

/// One expectation's state and result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectationResult {
    pub label: String,
    pub kind: String,
    pub verdict: Verdict,
    /// Virtual time it was met (or the measured gap for failovers).
    pub measured: Option<Duration>,
    pub deadline: Option<Duration>,
    pub detail: String,
    /// The random fault this verdict was judged relative to, if one overlapped its window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<String>,
    /// Re-judging after the last heal: the anchor (the heal) and the window replacing the
    /// expectation's own `after` and `within`.
    #[serde(skip)]
    anchor: Option<Duration>,
    #[serde(skip)]
    window: Option<Duration>,
    /// Failover bookkeeping: when the flow first broke after the fault.
    #[serde(skip)]
    broke_at: Option<Duration>,
}

/// What the checker sees at one instant.
pub struct Observation<'a> {
    pub now: Duration,
    /// Fired timeline events by name (and label) → time.
    pub fired: &'a BTreeMap<String, Duration>,
    /// Flow name → its traced path.
    pub flows: &'a BTreeMap<String, PathTrace>,
    /// Node pairs (src, dst) → traced path, for present nodes.
    pub pairs: &'a BTreeMap<(String, String), PathTrace>,
    /// Node → site.
    pub site_of: &'a BTreeMap<String, String>,
    /// Hops that crossed the public internet unencrypted: (link, description).
    pub plaintext: &'a [(String, String)],
    /// Random faults so far.
    pub faults: &'a Disturbances,
    /// Time the scenario allows to reach steady state again after a heal.
    pub settle: Duration,
}

fn encap_matches(want: Encap, got: PlanEncap) -> bool {
    format!("{want:?}").eq_ignore_ascii_case(&format!("{got:?}"))
}

fn member_of(members: &Members, node: &str, site_of: &BTreeMap<String, String>) -> bool {
    members.is_all()
        || members
            .names()
            .iter()
            .any(|m| m == node || site_of.get(node).is_some_and(|s| s == m))
}

impl ExpectationResult {
    pub fn new(e: &Expectation, index: usize) -> Self {
        ExpectationResult {
            label: e.label(index),
            kind: e.key().to_string(),
            verdict: Verdict::Pending,
            measured: None,
            deadline: None,
            detail: String::new(),
            relative_to: None,
            anchor: None,
            window: None,
            broke_at: None,
        }
    }

    /// The steady-state expectations (no `after`; connectivity that must hold, paths, path
    /// MTUs), which must hold again after every fault has healed.
    pub fn is_steady_state(e: &Expectation) -> bool {
        e.after().is_none()
            && match e {
                Expectation::Connectivity(c) => c.reachable,
                Expectation::Path(_) | Expectation::PathMtu(_) => true,
                _ => false,
            }
    }

    /// `e` judged again from a heal at `heal`, within `settle`.
    pub fn after_heal(e: &Expectation, index: usize, heal: Duration, settle: Duration) -> Self {
        let mut r = ExpectationResult::new(e, index);
        r.label = format!("{} after last heal", r.label);
        r.anchor = Some(heal);
        r.window = Some(settle);
        r
    }

    /// Starts judging again from a later heal.
    pub fn reanchor(&mut self, heal: Duration) {
        self.anchor = Some(heal);
        self.verdict = Verdict::Pending;
        self.measured = None;
        self.detail.clear();
        self.relative_to = None;
    }

    fn within(&self, within: &unbounded_scenario::TimeSpan) -> Duration {
        self.window.unwrap_or(within.as_std())
    }

    /// Re-judges a pending expectation at `obs.now`.
    pub fn update(&mut self, e: &Expectation, obs: &Observation<'_>) {
        if self.verdict == Verdict::Fail {
            return;
        }
        if self.verdict == Verdict::NotJudged && !matches!(e, Expectation::Uninterrupted(_)) {
            return;
        }
        let anchor = match (self.anchor, e.after()) {
            (Some(t), _) => t,
            (None, Some(ev)) => match obs.fired.get(ev) {
                Some(t) => *t,
                None => return, // not yet fired
            },
            (None, None) => Duration::ZERO,
        };
        match e {
            Expectation::Connectivity(c) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = anchor + self.within(&c.within);
                self.deadline = Some(deadline);
                let mut bad = None;
                for ((s, d), t) in obs.pairs {
                    if member_of(&c.from, s, obs.site_of)
                        && member_of(&c.to, d, obs.site_of)
                        && t.delivered() != c.reachable
                    {
                        bad = Some(t.describe(s));
                        break;
                    }
                }
                // Random faults cannot make pods reachable: "must not reach" is judged as is.
                if c.reachable {
                    self.settle(obs, anchor, deadline, bad);
                } else {
                    self.settle_absolute(obs.now, deadline, bad);
                }
            }
            Expectation::Path(p) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = anchor + self.within(&p.within);
                self.deadline = Some(deadline);
                let bad = match obs.flows.get(&p.flow) {
                    None => Some(format!("flow {} not traced", p.flow)),
                    Some(t) => {
                        let ok = t.delivered()
                            && t.hops.len() == p.hops.len()
                            && t.hops.iter().zip(&p.hops).all(|(h, want)| {
                                member_of(&want.to, &h.to, &BTreeMap::new())
                                    && encap_matches(want.encap, h.encap)
                            });
                        (!ok).then(|| format!("path is {}", t.describe("src")))
                    }
                };
                self.settle(obs, anchor, deadline, bad);
            }
            Expectation::PathMtu(p) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = anchor + self.within(&p.within);
                self.deadline = Some(deadline);
                let bad = match obs.flows.get(&p.flow) {
                    Some(t) if t.delivered() => {
                        let mtu = t.hops.iter().map(|h| h.mtu).min().unwrap_or(0);
                        let wire = t.hops.iter().map(|h| h.wire_mtu).min().unwrap_or(0);
                        if mtu > wire {
                            Some(format!(
                                "path MTU is {mtu} but the underlay carries only {wire}: larger packets would be lost"
                            ))
                        } else {
                            (mtu != p.mtu).then(|| format!("path MTU is {mtu}, expected {}", p.mtu))
                        }
                    }
                    Some(t) => Some(t.describe("src")),
                    None => Some(format!("flow {} not traced", p.flow)),
                };
                self.settle(obs, anchor, deadline, bad);
            }
            Expectation::Failover(f) => {
                let deadline = anchor + self.within(&f.within);
                self.deadline = Some(deadline);
                if self.verdict == Verdict::Pass {
                    return;
                }
                let delivered = obs.flows.get(&f.flow).is_some_and(|t| t.delivered());
                let (relative, by) = obs.faults.relative_deadline(anchor, deadline, obs.settle);
                match (self.broke_at, delivered) {
                    (None, false) => self.broke_at = Some(obs.now),
                    (Some(b), true) => {
                        let gap = obs.now.saturating_sub(b);
                        self.measured = Some(gap);
                        self.detail = format!(
                            "flow restored {} after the fault",
                            fmt_time(obs.now.saturating_sub(anchor))
                        );
                        self.verdict = if obs.now <= deadline {
                            Verdict::Pass
                        } else if let Some(fault) = by.filter(|_| obs.now <= relative) {
                            // The gap measures the random fault as much as the failover.
                            self.relative_to = Some(fault.to_string());
                            self.detail = format!(
                                "not judged: its deadline was overlapped by {fault}; flow restored at {}",
                                fmt_time(obs.now)
                            );
                            Verdict::NotJudged
                        } else {
                            Verdict::Fail
                        };
                    }
                    (None, true) if obs.now >= deadline => {
                        self.measured = Some(Duration::ZERO);
                        self.detail = "flow never broke".into();
                        self.verdict = Verdict::Pass;
                    }
                    _ => {}
                }
                if self.verdict == Verdict::Pending && obs.now > relative {
                    self.verdict = Verdict::Fail;
                    self.detail = format!(
                        "flow still broken: {}",
                        obs.flows
                            .get(&f.flow)
                            .map(|t| t.describe("src"))
                            .unwrap_or_default()
                    );
                    if let Some(fault) = by {
                        self.relative_to = Some(fault.to_string());
                        let _ = write!(
                            self.detail,
                            " (deadline moved to {} by {fault})",
                            fmt_time(relative)
                        );
                    }
                }
            }
            Expectation::Uninterrupted(u) => {
                let delivered = obs.flows.get(&u.flow).is_some_and(|t| t.delivered());
                if delivered {
                    if self.verdict == Verdict::Pending {
                        self.verdict = Verdict::Pass;
                    }
                    return;
                }
                let how = obs
                    .flows
                    .get(&u.flow)
                    .map(|t| t.describe("src"))
                    .unwrap_or_default();
                match obs.faults.in_effect(obs.now) {
                    // Interrupted while a random fault is in effect: that fault's doing, or not
                    // — the event's losslessness cannot be told apart from it.
                    Some(fault) => {
                        if self.verdict != Verdict::NotJudged {
                            self.verdict = Verdict::NotJudged;
                            self.measured = Some(obs.now);
                            self.relative_to = Some(fault.to_string());
                            self.detail = format!(
                                "not judged: interrupted at {} during {fault}: {how}",
                                fmt_time(obs.now)
                            );
                        }
                    }
                    None => {
                        self.verdict = Verdict::Fail;
                        self.measured = Some(obs.now);
                        self.detail = format!("interrupted: {how}");
                    }
                }
            }
            Expectation::NoPlaintext(n) => {
                let hit = obs
                    .plaintext
                    .iter()
                    .find(|(link, _)| n.links.is_all() || n.links.names().contains(link));
                if let Some((link, what)) = hit {
                    self.verdict = Verdict::Fail;
                    self.measured = Some(obs.now);
                    self.detail = format!("plaintext over {link}: {what}");
                } else {
                    self.verdict = Verdict::Pass;
                }
            }
        }
    }

    /// Judges a deadline expectation; past its deadline, a random fault in effect during its
    /// window moves the deadline to the fault's heal plus the settle time.
    fn settle(
        &mut self,
        obs: &Observation<'_>,
        anchor: Duration,
        deadline: Duration,
        bad: Option<String>,
    ) {
        let now = obs.now;
        let (relative, by) = if now > deadline {
            obs.faults.relative_deadline(anchor, deadline, obs.settle)
        } else {
            (deadline, None)
        };
        self.settle_absolute(now, relative, bad);
        if let Some(fault) = by {
            self.relative_to = Some(fault.to_string());
            let _ = write!(
                self.detail,
                " (its deadline {} was overlapped by {fault}; judged from the heal, by {})",
                fmt_time(deadline),
                fmt_time(relative)
            );
        }
    }

    fn settle_absolute(&mut self, now: Duration, deadline: Duration, bad: Option<String>) {
        match bad {
            None => {
                self.verdict = Verdict::Pass;
                self.measured = Some(now);
                self.detail = format!("met at {}", fmt_time(now));
            }
            Some(why) => {
                self.detail = why;
                if now > deadline {
                    self.verdict = Verdict::Fail;
                }
            }
        }
    }

    /// At the end of the run anything still pending is a failure.
    pub fn finish(&mut self) {
        if self.verdict == Verdict::Pending {
            self.verdict = Verdict::Fail;
            if self.detail.is_empty() {
                self.detail = "never judged (its event never fired)".into();
            }
        }
    }
}

/// How long after its anchor an expectation may take (zero for continuous ones).
pub fn window(e: &Expectation) -> Duration {
    match e {
        Expectation::Connectivity(c) => c.within.as_std(),
        Expectation::Path(p) => p.within.as_std(),
        Expectation::Failover(f) => f.within.as_std(),
        Expectation::PathMtu(p) => p.within.as_std(),
        Expectation::Uninterrupted(_) | Expectation::NoPlaintext(_) => Duration::ZERO,
    }
}

/// The latest deadline any expectation can have (relative to its anchor).
pub fn longest_window(s: &Scenario) -> Duration {
    s.expect.iter().map(window).max().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
