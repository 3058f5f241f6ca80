//! The event trace of one run: every line the run prints about what happened, in virtual-time
//! order. Two runs with the same seed must produce byte-identical traces.

use std::fmt::Write;
use std::time::Duration;

/// FNV-1a, 64 bit: a stable hash (std's hasher is randomly keyed per process).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Virtual time as `12.345s`.
pub fn fmt_time(t: Duration) -> String {
    format!("{}.{:03}s", t.as_secs(), t.subsec_millis())
}

/// Lines of the run, each prefixed with its virtual time.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    text: String,
    lines: usize,
}

impl Trace {
    pub fn record(&mut self, at: Duration, line: impl AsRef<str>) {
        let _ = writeln!(self.text, "{} {}", fmt_time(at), line.as_ref());
        self.lines += 1;
    }

    pub fn hash(&self) -> u64 {
        fnv1a(self.text.as_bytes())
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The last `n` lines (for replay output).
    pub fn tail(&self, n: usize) -> Vec<&str> {
        let all: Vec<&str> = self.text.lines().collect();
        all[all.len().saturating_sub(n)..].to_vec()
    }
}
