//! `--kernel vm`: the whole lab inside a qemu (TCG) VM booted with Debian's cloud kernel, so
//! kernel WireGuard, GENEVE, IPIP, dummy and netem are real.
//!
//! The host packs an initramfs ([`initramfs`]) with this very `netns-lab` binary, the lab's
//! tools and the cloud kernel's modules ([`kernel`]), boots it ([`qemu`]), and the guest's
//! `/init` runs `netns-lab scenario FILE --vm-guest` — the ordinary host-mode run, on the
//! guest's kernel. Its console is streamed here; the result JSON and exit status come back
//! as marker lines on the same console.

pub mod cpio;
pub mod initramfs;
pub mod kernel;
pub mod qemu;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kernel::GuestKernel;

/// Prefix of the guest's control lines on the console.
const MARKER: &str = "@@netns-lab-vm@@";

/// A guest run that does not finish by then is killed (TCG is slow, but a scenario that
/// takes this long is stuck).
const GUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "no Debian cloud kernel unpacked under {cache}: run scripts/setup.sh (it downloads linux-image-cloud-amd64's kernel there)"
    )]
    NoKernel { cache: String },
    #[error("the cloud kernel {kernel} has no module {module}: re-run scripts/setup.sh")]
    MissingModule { module: String, kernel: String },
    #[error("VM mode needs {tool} on this machine: run scripts/setup.sh (see `netns-lab doctor`)")]
    MissingTool { tool: String },
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
    #[error("scenario file name {0:?} must be plain (letters, digits, '.', '-', '_')")]
    ScenarioName(String),
    #[error("the VM run did not finish within {GUEST_TIMEOUT:?}; qemu was killed")]
    Timeout,
    #[error(
        "the VM stopped without reporting a result (kernel panic or /init failure; see the console above)"
    )]
    NoResult,
    #[error(
        "the guest kernel reported {0:?} and was stopped (softlockup_panic): see the console above"
    )]
    GuestLockup(String),
}

/// One `scenario --kernel vm` run.
#[derive(Clone, Debug)]
pub struct VmRun {
    pub scenario: PathBuf,
    /// The lab name (already sanitized: `[a-z0-9-]`).
    pub name: String,
    pub without_delay: bool,
}

/// What came back from the guest.
#[derive(Clone, Debug)]
pub struct VmOutcome {
    /// `netns-lab scenario`'s exit status inside the guest.
    pub exit_code: i32,
    /// The guest's result JSON (`--json`), when it got that far.
    pub json: Option<String>,
    /// Host wall time from starting qemu to the guest's `/init` having loaded its modules.
    pub boot: Duration,
    /// Host wall time from then to the guest's exit marker.
    pub run: Duration,
}

/// Per-process scratch directory holding the initramfs.
fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("netns-lab-vm-{}", std::process::id()))
}

/// Removes [`work_dir`] (on every exit path, including Ctrl-C).
pub fn remove_work_dir() {
    let _ = std::fs::remove_dir_all(work_dir());
}

struct WorkDir;

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove_work_dir();
    }
}

/// `/init` with the run's arguments filled in.
fn render_init(run: &VmRun) -> Result<String, VmError> {
    let file = run
        .scenario
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !plain(&file) {
        return Err(VmError::ScenarioName(file));
    }
    if !plain(&run.name) {
        return Err(VmError::ScenarioName(run.name.clone()));
    }
    let mut args = format!("/lab/{file} --vm-guest --name {}", run.name);
    if run.without_delay {
        args.push_str(" --without-delay");
    }
    Ok(include_str!("init.sh")
        .replace("@MARKER@", MARKER)
        .replace("@ARGS@", &args))
}

/// Kernel command line: serial console, quiet, and a panic powers the VM off (`-no-reboot`).
/// `RUST_LOG` and `NETNS_LAB_TRACE` pass through (the kernel hands `KEY=VALUE` words it does
/// not know to `/init` as environment).
fn cmdline() -> String {
    // A soft lockup panics the guest (and so ends qemu) instead of hanging the run for the
    // whole timeout; loglevel 5 keeps warnings and their stack traces, drops link chatter.
    let mut c =
        String::from("console=ttyS0 quiet loglevel=5 panic=-1 softlockup_panic=1 rdinit=/init");
    for var in ["RUST_LOG", "NETNS_LAB_TRACE"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
            && !v.contains(char::is_whitespace)
        {
            c.push_str(&format!(" {var}={v}"));
        }
    }
    c
}

/// Packs, boots, streams and collects one guest run. `lab_binary` is the `netns-lab` to run
/// inside (this executable).
pub fn run_scenario(run: &VmRun, lab_binary: &Path) -> Result<VmOutcome, VmError> {
    let kernel = GuestKernel::find()?;
    let (ship, order) = kernel.module_plan()?;
    let payload = initramfs::GuestPayload {
        kernel: &kernel,
        lab_binary,
        scenario: &run.scenario,
        init_script: render_init(run)?,
        modules_order: &order,
        modules_ship: &ship,
    };
    let archive = initramfs::build(&payload)?;
    let _work = WorkDir;
    let dir = work_dir();
    std::fs::create_dir_all(&dir).map_err(|e| VmError::Io {
        what: dir.display().to_string(),
        detail: e.to_string(),
    })?;
    let initrd = dir.join("initramfs.cpio");
    let size = std::fs::File::create(&initrd)
        .map(std::io::BufWriter::new)
        .and_then(|mut f| archive.write_to(&mut f))
        .map_err(|e| VmError::Io {
            what: initrd.display().to_string(),
            detail: e.to_string(),
        })?;
    eprintln!(
        "netns-lab vm: booting {} (qemu TCG; initramfs {} MB; {} boot modules)",
        kernel.release,
        size / 1_000_000,
        order.len()
    );
    let start = Instant::now();
    let vm = qemu::Qemu::boot(&kernel.image(), &initrd, &cmdline())?;
    let deadline = start + GUEST_TIMEOUT;
    let mut booted = None;
    let mut json = None;
    let mut lockup = None;
    while let Some(line) = vm.next_line(deadline)? {
        let Some(ctl) = line.strip_prefix(MARKER) else {
            if lockup.is_none() && line.contains("soft lockup") {
                lockup = Some(line.trim().to_string());
            }
            println!("{line}");
            continue;
        };
        let ctl = ctl.trim_start();
        if ctl.starts_with("BOOTED") {
            booted = Some(start.elapsed());
            eprintln!(
                "netns-lab vm: guest up after {:.1} s",
                start.elapsed().as_secs_f64()
            );
        } else if let Some(j) = ctl.strip_prefix("JSON ") {
            json = Some(j.to_string());
        } else if let Some(code) = ctl.strip_prefix("EXIT ") {
            let boot = booted.unwrap_or_default();
            let outcome = VmOutcome {
                exit_code: code.trim().parse().unwrap_or(1),
                json,
                boot,
                run: start.elapsed().saturating_sub(boot),
            };
            vm.finish(Duration::from_secs(10));
            return Ok(outcome);
        }
    }
    Err(lockup.map_or(VmError::NoResult, VmError::GuestLockup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_carries_the_run() {
        let run = VmRun {
            scenario: "scenarios/tunnel-matrix.yaml".into(),
            name: "tunnel-matrix".into(),
            without_delay: false,
        };
        let init = render_init(&run).unwrap();
        assert!(init.contains(
            "/usr/bin/netns-lab scenario /lab/tunnel-matrix.yaml --vm-guest --name tunnel-matrix --json"
        ));
        assert!(init.contains(&format!("echo \"{MARKER} EXIT $rc\"")));
        assert!(!init.contains("@ARGS@") && !init.contains("@MARKER@"));
    }

    #[test]
    fn odd_scenario_names_are_refused() {
        let run = VmRun {
            scenario: "scenarios/x'; reboot.yaml".into(),
            name: "x".into(),
            without_delay: false,
        };
        assert!(matches!(render_init(&run), Err(VmError::ScenarioName(_))));
    }
}
