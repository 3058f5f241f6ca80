//! The progress display while a lab is built, and the Ctrl-C flag every long step polls.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the signal thread when SIGINT or SIGTERM arrives.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Prints `[  0.4s] step` lines on stderr, and whether each finished.
pub struct Progress {
    start: Instant,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            start: Instant::now(),
            quiet,
        }
    }

    pub fn step(&mut self, what: &str) {
        if !self.quiet {
            eprintln!("[{:>6.2}s] {what}", self.start.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
        }
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    /// Fails the current step if Ctrl-C was pressed.
    pub fn check_interrupt(&self) -> Result<(), crate::topology::build::BuildError> {
        if interrupted() {
            Err(crate::topology::build::BuildError::Interrupted)
        } else {
            Ok(())
        }
    }
}
