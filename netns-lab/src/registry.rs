//! What one lab created, recorded *before* each thing is created, so that `down`, an error
//! path and Ctrl-C remove exactly that and nothing else.
//!
//! The record lives in `/run/netns-lab/<lab>/state.json` so that `down` in a later process
//! finds what `up` made. Processes are never tracked by name: teardown kills, by PID, the
//! processes that run inside the lab's own namespaces (`ip netns pids`), then deletes the
//! namespaces (which removes every link in them).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmd;

/// Where every lab keeps its state.
pub const STATE_ROOT: &str = "/run/netns-lab";
/// Every namespace a lab creates starts with this, then the lab name and a dash.
pub const NETNS_PREFIX: &str = "nl-";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("lab state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lab state {path} is not valid JSON: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("lab {0:?} is already up; run `netns-lab down --name {0}` first")]
    AlreadyUp(String),
}

/// The persisted record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabState {
    pub lab: String,
    /// In creation order; removed in reverse.
    pub namespaces: Vec<String>,
    /// Files and directories to remove (CNI data, conflists, keys, captures).
    pub paths: Vec<PathBuf>,
    /// Processes the lab started outside its namespaces (rare; by PID).
    pub pids: Vec<u32>,
    /// The scenario the lab was built from.
    pub scenario: Option<PathBuf>,
    /// The `netns-lab` process that runs this lab's control plane and agents.
    #[serde(default)]
    pub owner_pid: Option<u32>,
}

/// Shared, persisted registry of one lab's resources. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Mutex<LabState>>,
}

/// A lab name safe for namespace and file names: lowercase alphanumerics and dashes.
pub fn sanitize_lab_name(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(16)
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "lab".into() } else { s }
}

pub fn lab_dir(lab: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(lab)
}

fn state_file(lab: &str) -> PathBuf {
    lab_dir(lab).join("state.json")
}

impl Registry {
    /// Starts a fresh lab; fails if one of that name is recorded as up.
    pub fn create(lab: &str, scenario: Option<PathBuf>) -> Result<Self, RegistryError> {
        let dir = lab_dir(lab);
        if state_file(lab).exists() || !existing_namespaces(lab).is_empty() {
            return Err(RegistryError::AlreadyUp(lab.to_string()));
        }
        std::fs::create_dir_all(&dir).map_err(|source| RegistryError::Io {
            path: dir.clone(),
            source,
        })?;
        let reg = Registry {
            inner: Arc::new(Mutex::new(LabState {
                lab: lab.to_string(),
                paths: vec![dir],
                scenario,
                owner_pid: Some(std::process::id()),
                ..Default::default()
            })),
        };
        reg.persist(&reg.lock())?;
        Ok(reg)
    }

    /// Loads the record of a lab that is up (or an empty one if the file is gone, so that
    /// `down` still sweeps the lab's namespaces by prefix).
    pub fn load(lab: &str) -> Result<Self, RegistryError> {
        let path = state_file(lab);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| RegistryError::Corrupt { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LabState {
                lab: lab.to_string(),
                paths: vec![lab_dir(lab)],
                ..Default::default()
            },
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        Ok(Registry {
            inner: Arc::new(Mutex::new(state)),
        })
    }

    pub fn lab(&self) -> String {
        self.lock().lab.clone()
    }

    pub fn state(&self) -> LabState {
        self.lock().clone()
    }

    /// Locks the record. Teardown holds this lock until the process exits, so nothing new
    /// is created after Ctrl-C started removing things.
    pub fn lock(&self) -> MutexGuard<'_, LabState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, state: &LabState) -> Result<(), RegistryError> {
        let path = state_file(&state.lab);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).expect("state serializes");
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| RegistryError::Io { path, source })
    }

    /// The full namespace name of a lab object (`nl-<lab>-<short>`).
    pub fn netns_name(&self, short: &str) -> String {
        format!("{NETNS_PREFIX}{}-{short}", self.lab())
    }

    /// Records a namespace (before it is created).
    pub fn add_netns(&self, name: &str) -> Result<(), RegistryError> {
        let mut st = self.lock();
        if !st.namespaces.iter().any(|n| n == name) {
            st.namespaces.push(name.to_string());
        }
        self.persist(&st)
    }

    /// Records a file or directory (before it is created).
    pub fn add_path(&self, path: &Path) -> Result<(), RegistryError> {
        let mut st = self.lock();
        if !st.paths.iter().any(|p| p == path) {
            st.paths.push(path.to_path_buf());
        }
        self.persist(&st)
    }

    /// Records a process the lab started in the host namespace.
    pub fn add_pid(&self, pid: u32) -> Result<(), RegistryError> {
        let mut st = self.lock();
        st.pids.push(pid);
        self.persist(&st)
    }

    pub fn remove_pid(&self, pid: u32) -> Result<(), RegistryError> {
        let mut st = self.lock();
        st.pids.retain(|p| *p != pid);
        self.persist(&st)
    }

    /// Removes everything recorded, plus any namespace carrying this lab's prefix. Errors are
    /// collected and teardown carries on; the returned list is empty when all went well.
    pub fn teardown(&self) -> Vec<String> {
        let st = self.lock();
        teardown_state(&st)
    }

    /// Asks the process that owns the lab (a running `up` or `scenario`) to tear it down
    /// itself, and waits for it to exit. Only that recorded PID is signalled, and only if it
    /// is still a netns-lab process.
    pub fn stop_owner(&self, wait: Duration) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(pid) = self.lock().owner_pid else {
            return;
        };
        if pid == std::process::id() {
            return;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "netns-lab" {
            return;
        }
        let p = Pid::from_raw(pid as i32);
        let _ = kill(p, Signal::SIGTERM);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && kill(p, None).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The namespaces on this machine that belong to a lab (by exact prefix).
pub fn existing_namespaces(lab: &str) -> Vec<String> {
    let prefix = format!("{NETNS_PREFIX}{lab}-");
    let Ok(out) = cmd::stdout("ip", &["netns", "list"]) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Labs recorded under the state root.
pub fn recorded_labs() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(STATE_ROOT) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn pids_in(netns: &str) -> Vec<i32> {
    cmd::stdout("ip", &["netns", "pids", netns])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_and_wait(pids: &[i32]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && pids.iter().any(|&p| kill(Pid::from_raw(p), None).is_ok()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    // SIGKILL is asynchronous: wait for the processes to be gone, so the namespaces (and the
    // host end of a veth into one) are released when teardown returns.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|&p| kill(Pid::from_raw(p), None).is_ok() && !is_zombie(p))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that exited but was not reaped yet (its parent, e.g. a killed lab owner, is gone
/// or busy): it holds nothing any more.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn teardown_state(st: &LabState) -> Vec<String> {
    let mut errors = Vec::new();
    let mut namespaces = st.namespaces.clone();
    for extra in existing_namespaces(&st.lab) {
        if !namespaces.contains(&extra) {
            namespaces.push(extra);
        }
    }
    // Processes first (every one inside a lab namespace, and recorded host-side ones), so no
    // daemon holds a namespace or a TUN device open while it is removed.
    let mut pids: Vec<i32> = namespaces.iter().flat_map(|ns| pids_in(ns)).collect();
    pids.extend(st.pids.iter().map(|&p| p as i32));
    let me = std::process::id() as i32;
    pids.retain(|&p| p != me);
    kill_and_wait(&pids);
    let present = cmd::stdout("ip", &["netns", "list"]).unwrap_or_default();
    for ns in namespaces.iter().rev() {
        let exists = present
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str()));
        if !exists {
            continue;
        }
        if let Err(e) = cmd::run("ip", &["netns", "del", ns]) {
            errors.push(e.to_string());
        }
    }
    for path in st.paths.iter().rev() {
        let res = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match res {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                errors.push(format!("remove {}: {e}", path.display()))
            }
            _ => {}
        }
    }
    errors
}
