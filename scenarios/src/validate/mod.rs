//! Semantic checks run after the file deserialized: references, impossible topologies and
//! impossible timelines. Each problem names the path of the value it is about; the position
//! index turns that into a line and column.

mod expect;
mod objects;
mod timeline;
mod topology;

use crate::Scenario;
use crate::error::{Diagnostic, Location};
use crate::position::PositionIndex;

/// Problems found so far, each at a value path such as `topology.nodes[2].site`.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<(String, String)>,
}

impl Problems {
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.found.push((path.into(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Locate every problem and sort them in file order.
    pub fn into_diagnostics(self, file: &str, index: &PositionIndex) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = self
            .found
            .into_iter()
            .map(|(path, message)| Diagnostic {
                file: file.to_owned(),
                location: index.locate(&path),
                message,
            })
            .collect();
        out.sort_by_key(|d| d.location.unwrap_or(Location { line: 0, column: 0 }));
        out
    }
}

/// Run every check.
pub fn scenario(scenario: &Scenario, objects_parsed: bool, problems: &mut Problems) {
    topology::check(&scenario.topology, problems);
    if objects_parsed {
        objects::check(scenario, problems);
    }
    expect::check_flows(scenario, problems);
    timeline::check(scenario, problems);
    expect::check(scenario, problems);
}

/// Reject names that cannot become Kubernetes object or label values (DNS-1123 labels).
pub(crate) fn check_name(name: &str, what: &str, path: String, problems: &mut Problems) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        problems.at(
            path,
            format!(
                "{what} name `{name}` is not a DNS label: use 1–63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        );
    }
}

/// Report later duplicates of names, pointing at the duplicate.
pub(crate) fn check_unique<'a>(
    names: impl Iterator<Item = (String, &'a str)>,
    what: &str,
    problems: &mut Problems,
) {
    let mut seen = std::collections::HashSet::new();
    for (path, name) in names {
        if !seen.insert(name) {
            problems.at(
                path,
                format!("{what} `{name}` is defined twice: give each {what} its own name"),
            );
        }
    }
}

/// `a, b, c` for a "use one of" hint.
pub(crate) fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.is_empty() {
        "(none defined)".to_owned()
    } else {
        all.join(", ")
    }
}
