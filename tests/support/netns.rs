//! Throwaway network namespaces for tests, with RAII cleanup.
//!
//! [`Netns`] creates a named namespace (`ip netns add`) and deletes it on drop, even when the
//! test panics; deleting a namespace removes every link inside it. [`Netns::enter`] runs a
//! closure with the calling thread switched into the namespace (sockets opened there stay
//! there) and switches back even if the closure panics. [`Child`] kills the process it
//! started, by PID, on drop.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this support module"
)]

use std::fs::File;
use std::process::{Command, Output, Stdio};

use nix::sched::{CloneFlags, setns};

/// Says out loud that a test did not run and why: on stdout, and appended to the file named by
/// `UNBOUNDED_SKIP_LOG` (scripts/test.sh prints that file, since libtest hides a passing test's output).
pub fn report_skip(why: &str) {
    println!("SKIPPED {why}");
    if let Some(path) = std::env::var_os("UNBOUNDED_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "SKIPPED {why}");
        }
    }
}

/// `true` if the test may create namespaces; prints why not otherwise.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        report_skip(&format!(
            "{test}: network namespace tests need root (run as root or under sudo)"
        ));
        false
    }
}

/// A named network namespace that is deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `unet-<tag>-<pid>` (unique per test process, short enough for `ip`).
    pub fn new(tag: &str) -> Netns {
        let name = format!("unet-{tag}-{}", std::process::id());
        // A leftover from a crashed earlier run with the same PID would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; panics with its output if it fails.
    pub fn sh(&self, cmd: &str) -> String {
        let out = run_ok(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", cmd]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command inside the namespace and returns whether it succeeded.
    pub fn try_sh(&self, cmd: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `f` on this thread switched into the namespace.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let original = File::open("/proc/thread-self/ns/net").expect("open own netns");
        let target = File::open(format!("/run/netns/{}", self.name)).expect("open test netns");
        setns(&target, CloneFlags::CLONE_NEWNET).expect("setns into test netns");
        struct Restore(File);
        impl Drop for Restore {
            fn drop(&mut self) {
                setns(&self.0, CloneFlags::CLONE_NEWNET).expect("setns back");
            }
        }
        let _restore = Restore(original);
        f()
    }

    /// Starts a process inside the namespace; it is killed when the guard drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Child(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A process this test started; killed (by PID) and reaped on drop.
pub struct Child(pub std::process::Child);

impl Child {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects `a` and `b` with a veth pair and gives each end an address.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    run_ok(Command::new("ip").args([
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]));
    a.sh(&format!(
        "ip addr add {a_addr} dev {a_if} && ip link set {a_if} up"
    ));
    b.sh(&format!(
        "ip addr add {b_addr} dev {b_if} && ip link set {b_if} up"
    ));
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
