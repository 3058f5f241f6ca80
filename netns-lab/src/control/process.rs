//! Long-running control-plane processes of kube mode (etcd, kube-apiserver, the controller,
//! node agents): started with their output in a log file, recorded in the lab registry by PID
//! before anything else can fail, and killed by that PID — never by name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::registry::Registry;

#[derive(Debug, thiserror::Error)]
#[error("cannot start {what} ({program}): {detail}")]
pub struct StartError {
    pub what: String,
    pub program: String,
    pub detail: String,
}

/// A started process; killed (SIGTERM, then SIGKILL) and reaped on drop.
pub struct LabProcess {
    pub what: String,
    pub log: PathBuf,
    child: Option<Child>,
    reg: Registry,
}

impl LabProcess {
    /// Starts `program args` (inside `netns` when given, through `ip netns exec`, which execs
    /// the program: the PID is the program's).
    pub fn start(
        reg: &Registry,
        what: &str,
        netns: Option<&str>,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<LabProcess, StartError> {
        let err = |detail: String| StartError {
            what: what.into(),
            program: program.display().to_string(),
            detail,
        };
        let out = std::fs::File::create(log).map_err(|e| err(format!("{}: {e}", log.display())))?;
        let err_out = out.try_clone().map_err(|e| err(e.to_string()))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err_out);
        crate::signals::unblock_for_children(&mut cmd);
        let child = cmd.spawn().map_err(|e| err(e.to_string()))?;
        if let Err(e) = reg.add_pid(child.id()) {
            let mut p = LabProcess {
                what: what.into(),
                log: log.into(),
                child: Some(child),
                reg: reg.clone(),
            };
            p.terminate(Duration::ZERO);
            return Err(err(e.to_string()));
        }
        Ok(LabProcess {
            what: what.into(),
            log: log.into(),
            child: Some(child),
            reg: reg.clone(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(reason)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); log {}",
                self.what,
                self.log.display()
            )),
            _ => None,
        }
    }

    /// SIGKILL now: a crash, no chance to clean up or release anything.
    pub fn crash(mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        self.terminate(Duration::ZERO);
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps and unrecords it.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.reg.remove_pid(child.id());
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(3));
    }
}
