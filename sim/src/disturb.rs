//! Random faults as spans of virtual time, so expectations can be judged relative to them.
//!
//! A random fault is *in effect* from its start until the run next observes full connectivity
//! after the fault healed: recovery is observed, not assumed. While a scenario fault keeps
//! connectivity partial (a crashed gateway awaiting its restart), an overlapping random fault
//! stays in effect until the scenario heals too — the conservative reading, and every
//! judgement it changes is reported.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::trace::fmt_time;

/// One random fault.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpan {
    pub label: String,
    /// What it did, e.g. `crash hub-gw2`.
    pub what: String,
    #[serde(rename = "startMs", serialize_with = "ms")]
    pub start: Duration,
    /// When it healed (`None` while active). Instant faults (an agent restart) end at start.
    #[serde(rename = "endMs", serialize_with = "opt_ms")]
    pub end: Option<Duration>,
    /// First evaluation with full connectivity at or after `end`.
    #[serde(rename = "recoveredMs", serialize_with = "opt_ms")]
    pub recovered: Option<Duration>,
}

impl fmt::Display for FaultSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "random fault {} ({}) at {}",
            self.label,
            self.what,
            fmt_time(self.start)
        )?;
        if let Some(end) = self.end.filter(|e| *e > self.start) {
            write!(f, "–{}", fmt_time(end))?;
        }
        Ok(())
    }
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ms(d, s),
        None => s.serialize_none(),
    }
}

/// The random faults of a run so far.
#[derive(Clone, Debug, Default)]
pub struct Disturbances {
    pub spans: Vec<FaultSpan>,
}

impl Disturbances {
    pub fn started(&mut self, label: &str, what: String, at: Duration, instant: bool) {
        self.spans.push(FaultSpan {
            label: label.to_string(),
            what,
            start: at,
            end: instant.then_some(at),
            recovered: None,
        });
    }

    /// Marks the fault `label` healed (heal actions are labelled `<fault>-heal`).
    pub fn healed(&mut self, heal_label: &str, at: Duration) {
        let label = heal_label.strip_suffix("-heal").unwrap_or(heal_label);
        if let Some(s) = self.spans.iter_mut().find(|s| s.label == label) {
            s.end = Some(at);
        }
    }

    /// Records an evaluation: with full connectivity, every healed fault has recovered.
    pub fn observe(&mut self, now: Duration, full: bool) {
        if !full {
            return;
        }
        for s in &mut self.spans {
            if s.recovered.is_none() && s.end.is_some_and(|e| e <= now) {
                s.recovered = Some(now);
            }
        }
    }

    /// The faults in effect at `t`, as one description (`None` when there are none).
    pub fn in_effect(&self, t: Duration) -> Option<String> {
        let active: Vec<String> = self
            .spans
            .iter()
            .filter(|s| s.start <= t && s.recovered.is_none_or(|r| r >= t))
            .map(FaultSpan::to_string)
            .collect();
        (!active.is_empty()).then(|| active.join(", "))
    }

    /// The deadline of an expectation anchored at `anchor` with deadline `deadline`, moved
    /// past every random fault in effect during its window: each overlapping fault gives
    /// `settle` from its heal (unbounded while it has not healed). Returns the deadline and
    /// the fault that set it, `None` when no fault overlapped.
    pub fn relative_deadline(
        &self,
        anchor: Duration,
        deadline: Duration,
        settle: Duration,
    ) -> (Duration, Option<&FaultSpan>) {
        let mut d = deadline;
        let mut by = None;
        // A fault's allowance can reach into the next fault's span: repeat until stable.
        loop {
            let mut moved = false;
            for s in &self.spans {
                let overlaps = s.start <= d && s.recovered.is_none_or(|r| r >= anchor);
                if !overlaps {
                    continue;
                }
                let until = s.end.map_or(Duration::MAX, |e| e.saturating_add(settle));
                if until > d {
                    d = until;
                    by = Some(s);
                    moved = true;
                }
            }
            if !moved {
                return (d, by);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn deadlines_move_only_for_faults_in_effect_during_the_window() {
        let mut d = Disturbances::default();
        d.started("fault-0", "crash a".into(), s(10), false);
        d.healed("fault-0-heal", s(12));
        d.observe(s(13), true);
        d.started("fault-1", "crash b".into(), s(30), false);
        // Window 20..25 saw no fault in effect: fault-0 recovered at 13.
        assert_eq!(d.relative_deadline(s(20), s(25), s(15)).0, s(25));
        // Window 11..12 overlaps fault-0: 12 + 15.
        let (dl, by) = d.relative_deadline(s(11), s(12), s(15));
        assert_eq!((dl, by.map(|f| f.label.as_str())), (s(27), Some("fault-0")));
        // fault-1 has not healed: no deadline yet.
        assert_eq!(d.relative_deadline(s(29), s(31), s(15)).0, Duration::MAX);
        d.healed("fault-1-heal", s(34));
        assert_eq!(d.relative_deadline(s(29), s(31), s(15)).0, s(49));
        assert!(
            d.in_effect(s(40)).is_some_and(|f| f.contains("fault-1")),
            "not yet seen recovered"
        );
        d.observe(s(41), false);
        assert!(d.in_effect(s(41)).is_some());
        d.observe(s(42), true);
        assert!(d.in_effect(s(43)).is_none());
        assert!(d.in_effect(s(11)).is_some());
    }
}
