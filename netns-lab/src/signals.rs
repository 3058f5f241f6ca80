//! Ctrl-C and SIGTERM: a dedicated thread waits for them, marks the lab interrupted, and tears
//! down what the registry recorded before the process exits.
//!
//! The signals are blocked in every thread (they are blocked before any thread starts, and
//! threads inherit the mask), so only `sigwait` here sees them. Children would inherit the
//! mask too, so every command the lab starts unblocks them before exec
//! ([`unblock_for_children`]): a daemon must die on the SIGTERM teardown sends.

use std::sync::atomic::Ordering;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use crate::progress::INTERRUPTED;
use crate::registry::Registry;

fn lab_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Blocks SIGINT/SIGTERM/SIGHUP in the calling thread (call first thing in `main`).
pub fn block() {
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&lab_signals()), None);
}

/// Starts the thread that tears the lab down on a signal. `keep_running` labs (`up`) are torn
/// down too when interrupted while being built.
pub fn spawn_teardown_on_signal(reg: Registry) {
    std::thread::spawn(move || {
        let set = lab_signals();
        if let Ok(sig) = set.wait() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\nnetns-lab: {sig:?}: removing lab {} …", reg.lab());
            let errors = reg.teardown();
            for e in &errors {
                eprintln!("netns-lab: teardown: {e}");
            }
            // Hold the registry lock until exit so no other thread creates anything new.
            let _held = reg.lock();
            std::process::exit(if errors.is_empty() { 130 } else { 1 });
        }
    });
}

/// Restores default signal delivery in a child between fork and exec.
pub fn unblock_for_children(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: pthread_sigmask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&lab_signals()), None);
            Ok(())
        });
    }
}
