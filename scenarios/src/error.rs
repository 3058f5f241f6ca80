//! Errors of the scenario format: every problem carries the file, line and column it is about.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column inside a scenario file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem found in a scenario, rendered as `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or the name given to [`crate::Scenario::parse`]).
    pub file: String,
    /// Where in the file; absent only when the problem has no place (an empty file).
    pub location: Option<Location>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(
                f,
                "{}:{}:{}: {}",
                self.file, at.line, at.column, self.message
            ),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario; one entry per problem, in file order.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ScenarioError {
    /// The problems found, in file order (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ScenarioError::Read { .. } => &[],
            ScenarioError::Invalid(all) => all,
        }
    }
}

fn render(all: &[Diagnostic]) -> String {
    let lines: Vec<String> = all.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}
