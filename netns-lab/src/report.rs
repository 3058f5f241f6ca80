//! The per-expectation result table and its JSON form.

use serde::Serialize;

/// Outcome of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// The expectation's label (`name`, or `key#N`) or a lab-level check name.
    pub expectation: String,
    pub kind: String,
    pub passed: bool,
    /// What was measured, for the table.
    pub summary: String,
    /// Detail lines (failed pairs, captured packets …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// Measured figures (gap_ms, duration_ms …).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub figures: serde_json::Map<String, serde_json::Value>,
}

impl CheckResult {
    pub fn new(expectation: impl Into<String>, kind: impl Into<String>) -> Self {
        CheckResult {
            expectation: expectation.into(),
            kind: kind.into(),
            passed: false,
            summary: String::new(),
            details: Vec::new(),
            figures: serde_json::Map::new(),
        }
    }

    pub fn figure(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.figures.insert(key.into(), value.into());
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub lab: String,
    pub kernel: String,
    pub control_plane: String,
    /// Bring-up time of the topology, control plane, agents and pods.
    pub bring_up_ms: u128,
    /// What this run did not emulate or could not do, said out loud.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub results: Vec<CheckResult>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.passed)
    }

    pub fn failed_count(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }

    pub fn print_table(&self) {
        println!();
        println!(
            "scenario {} — lab {} — kernel {} — control plane {} — up in {:.1} s",
            self.scenario,
            self.lab,
            self.kernel,
            self.control_plane,
            self.bring_up_ms as f64 / 1000.0
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        let w = self
            .results
            .iter()
            .map(|r| r.expectation.len())
            .max()
            .unwrap_or(10)
            .max(11);
        println!(
            "{:<w$}  {:<14}  {:<6}  result",
            "expectation", "kind", "status"
        );
        println!("{}", "-".repeat(w + 40));
        for r in &self.results {
            let status = if r.passed { "PASS" } else { "FAIL" };
            println!(
                "{:<w$}  {:<14}  {:<6}  {}",
                r.expectation, r.kind, status, r.summary
            );
            if !r.passed {
                for d in r.details.iter().take(12) {
                    println!("{:<w$}  {:<14}  {:<6}    {d}", "", "", "");
                }
            }
        }
        println!(
            "{} passed, {} failed",
            self.results.len() - self.failed_count(),
            self.failed_count()
        );
    }
}
