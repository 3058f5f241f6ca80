//! Running Rust code inside a lab namespace: a thread enters the namespace with `setns(2)`
//! (which changes only the calling thread), and sockets it opens stay in that namespace.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {netns}: {source}")]
    Setns { netns: String, source: nix::Error },
}

/// `/var/run/netns/NAME`, where `ip netns add` bind-mounts the namespace.
pub fn path(netns: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(netns)
}

/// Moves the calling thread into `netns`. Only for threads that do nothing else afterwards.
pub fn enter(netns: &str) -> Result<(), NetnsError> {
    let p = path(netns);
    let f = File::open(&p).map_err(|source| NetnsError::Open { path: p, source })?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        netns: netns.into(),
        source,
    })
}

/// Runs `f` on a fresh thread inside `netns` and returns its result.
pub fn run_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let ns = netns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        Ok(f())
    })
    .join()
    .expect("namespace thread panicked")
}

/// Spawns a long-running thread inside `netns`.
pub fn spawn_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T, NetnsError>> {
    let ns = netns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        Ok(f())
    })
}
