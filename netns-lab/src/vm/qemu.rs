//! The qemu process: started with the kernel and initramfs, its serial console streamed to
//! this terminal line by line, killed (by PID) when the run ends, fails, times out or is
//! interrupted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::VmError;

/// The qemu binary (Debian package `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// Guest memory: the initramfs (≈ 100 MB unpacked) lives in it next to the whole lab.
const MEMORY_MB: u32 = 2048;

/// A running qemu, killed on drop.
pub struct Qemu {
    child: Child,
    /// Shared with the signal thread, which kills the same PID on Ctrl-C.
    pid: Arc<AtomicI32>,
    lines: mpsc::Receiver<String>,
}

impl Qemu {
    /// Boots `kernel` with `initrd` under TCG (KVM hangs on these machines) with the serial
    /// console on stdout.
    pub fn boot(kernel: &Path, initrd: &Path, cmdline: &str) -> Result<Qemu, VmError> {
        let mut cmd = Command::new(QEMU);
        cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "2"])
            .args(["-m", &MEMORY_MB.to_string()])
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", cmdline])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group: Ctrl-C reaches netns-lab only, which kills qemu by PID.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        crate::signals::unblock_for_children(&mut cmd);
        // And if netns-lab dies without running any handler (SIGKILL), the kernel kills qemu.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|e| VmError::MissingTool {
            tool: format!("{QEMU} ({e})"),
        })?;
        let pid = Arc::new(AtomicI32::new(child.id() as i32));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            // Bytes, not UTF-8 lines: a console may carry anything.
            while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf);
                let _ = tx.send(line.trim_end_matches(['\r', '\n']).to_string());
                buf.clear();
            }
        });
        kill_on_signal(pid.clone());
        Ok(Qemu { child, pid, lines })
    }

    /// The next console line, `None` at EOF; an error after `deadline`.
    pub fn next_line(&self, deadline: Instant) -> Result<Option<String>, VmError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) => Ok(Some(l)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(VmError::Timeout),
        }
    }

    /// Waits up to `grace` for qemu to exit on its own (the guest powers off), then kills it.
    pub fn finish(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                self.pid.store(0, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Child::kill signals exactly this PID.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.pid.store(0, Ordering::SeqCst);
    }
}

/// On SIGINT/SIGTERM/SIGHUP (blocked in every thread, see [`crate::signals`]): kill qemu by
/// PID and exit 130. The initramfs file is removed by the same thread's caller-installed path.
fn kill_on_signal(pid: Arc<AtomicI32>) {
    std::thread::spawn(move || {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        if let Ok(sig) = set.wait() {
            let p = pid.load(Ordering::SeqCst);
            if p > 0 {
                eprintln!("\nnetns-lab: {sig:?}: stopping the VM (qemu pid {p})");
                let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            super::remove_work_dir();
            std::process::exit(130);
        }
    });
}
