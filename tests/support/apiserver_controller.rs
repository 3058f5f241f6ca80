//! The controller binary as a child process of a test, pointed at a [`ControlPlane`]; killed by
//! PID on drop. Also small polling helpers shared by the controller tests.

#![allow(dead_code)] // reason: each test binary uses a different subset

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::apiserver::{ControlPlane, free_port};

/// One controller replica.
pub struct ControllerProcess {
    child: Option<Child>,
    pub identity: String,
    pub metrics_port: u16,
    pub log: PathBuf,
}

/// Lease timings used by the tests: a standby takes over within `LEASE_SECONDS`.
pub const LEASE_SECONDS: u64 = 4;

impl ControllerProcess {
    pub fn start(cp: &ControlPlane, identity: &str) -> Self {
        let metrics_port = free_port();
        let log = cp.dir().join(format!("controller-{identity}.log"));
        let file = fs::File::create(&log).expect("controller log file");
        // Lease and events live in namespaces that must exist.
        let _ = cp.kubectl(&["create", "namespace", "unbounded-net"]);
        let child = Command::new(env!("CARGO_BIN_EXE_unbounded-net-controller"))
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg(format!("--listen=127.0.0.1:{metrics_port}"))
            .arg(format!("--identity={identity}"))
            .arg("--lease-namespace=unbounded-net")
            .arg(format!("--lease-duration-seconds={LEASE_SECONDS}"))
            .arg("--renew-seconds=1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("start unbounded-net-controller");
        Self {
            child: Some(child),
            identity: identity.to_string(),
            metrics_port,
            log,
        }
    }

    /// SIGKILL, as when a node dies: no Lease release.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// GET a path of the health/metrics endpoint: (status line, body).
    pub fn get(&self, path: &str) -> Option<(String, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_string(), body.to_string()))
    }

    /// A counter or gauge value from /metrics.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
