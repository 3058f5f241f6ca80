//! Scenario expectations, judged continuously in virtual time against the forwarding model.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use unbounded_net::core::Encap as PlanEncap;
use unbounded_scenario::{Encap, Expectation, Members, Scenario};

use crate::forwarding::PathTrace;
use crate::trace::fmt_time;

/// Verdict of one expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Pending,
    Pass,
    Fail,
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
            broke_at: None,
        }
    }

    /// Re-judges a pending expectation at `obs.now`.
    pub fn update(&mut self, e: &Expectation, obs: &Observation<'_>) {
        if self.verdict == Verdict::Fail {
            return;
        }
        let anchor = match e.after() {
            Some(ev) => match obs.fired.get(ev) {
                Some(t) => *t,
                None => return, // not yet fired
            },
            None => Duration::ZERO,
        };
        match e {
            Expectation::Connectivity(c) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = anchor + c.within.as_std();
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
                self.settle(obs.now, deadline, bad);
            }
            Expectation::Path(p) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = anchor + p.within.as_std();
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
                self.settle(obs.now, deadline, bad);
            }
            Expectation::PathMtu(p) => {
                if self.verdict == Verdict::Pass {
                    return;
                }
                let deadline = p.within.as_std();
                self.deadline = Some(deadline);
                let bad = match obs.flows.get(&p.flow) {
                    Some(t) if t.delivered() => {
                        let mtu = t.hops.iter().map(|h| h.mtu).min().unwrap_or(0);
                        (mtu != p.mtu).then(|| format!("path MTU is {mtu}, expected {}", p.mtu))
                    }
                    Some(t) => Some(t.describe("src")),
                    None => Some(format!("flow {} not traced", p.flow)),
                };
                self.settle(obs.now, deadline, bad);
            }
            Expectation::Failover(f) => {
                let deadline = anchor + f.within.as_std();
                self.deadline = Some(deadline);
                if self.verdict == Verdict::Pass {
                    return;
                }
                let delivered = obs.flows.get(&f.flow).is_some_and(|t| t.delivered());
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
                if self.verdict == Verdict::Pending && obs.now > deadline {
                    self.verdict = Verdict::Fail;
                    self.detail = format!(
                        "flow still broken: {}",
                        obs.flows
                            .get(&f.flow)
                            .map(|t| t.describe("src"))
                            .unwrap_or_default()
                    );
                }
            }
            Expectation::Uninterrupted(u) => {
                let delivered = obs.flows.get(&u.flow).is_some_and(|t| t.delivered());
                if !delivered {
                    self.verdict = Verdict::Fail;
                    self.measured = Some(obs.now);
                    self.detail = format!(
                        "interrupted: {}",
                        obs.flows
                            .get(&u.flow)
                            .map(|t| t.describe("src"))
                            .unwrap_or_default()
                    );
                } else {
                    self.verdict = Verdict::Pass;
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

    fn settle(&mut self, now: Duration, deadline: Duration, bad: Option<String>) {
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

/// The latest deadline any expectation can have (relative to its anchor).
pub fn longest_window(s: &Scenario) -> Duration {
    s.expect
        .iter()
        .map(|e| match e {
            Expectation::Connectivity(c) => c.within.as_std(),
            Expectation::Path(p) => p.within.as_std(),
            Expectation::Failover(f) => f.within.as_std(),
            Expectation::PathMtu(p) => p.within.as_std(),
            _ => Duration::ZERO,
        })
        .max()
        .unwrap_or(Duration::ZERO)
}
