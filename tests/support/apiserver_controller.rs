//! A controller replica for tests, pointed at a [`ControlPlane`]: the real controller code
//! (kube-rs seam, leader election, reconcile loop, health endpoint) on its own thread and
//! tokio runtime. `kill` drops the runtime mid-flight — to the API server that is a crash: no
//! Lease release, requests cut. (In-process rather than the binary because the shared
//! `target/` directory is rebuilt concurrently by other builds.)

#![allow(dead_code)] // reason: each test binary uses a different subset

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use unbounded_net::cluster::KubeCluster;
use unbounded_net::controller::{Controller, ControllerSettings, SystemClock, http};

use super::apiserver::{ControlPlane, free_port};

/// One controller replica.
pub struct ControllerProcess {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    pub identity: String,
    pub metrics_port: u16,
}

/// Lease timings used by the tests: a standby takes over within `LEASE_SECONDS`.
pub const LEASE_SECONDS: u64 = 4;

impl ControllerProcess {
    pub fn start(cp: &ControlPlane, identity: &str) -> Self {
        Self::start_with(cp, identity, cp.kubeconfig.clone())
    }

    /// A replica using `kubeconfig` (e.g. one impersonating the controller's service account).
    pub fn start_with(cp: &ControlPlane, identity: &str, kubeconfig: std::path::PathBuf) -> Self {
        // Controller logs go to the test's captured output (shown when it fails).
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("unbounded_net=info")
            .try_init();
        let metrics_port = free_port();
        // The Lease lives in a namespace that must exist.
        let _ = cp.kubectl(&["create", "namespace", "unbounded-net"]);
        let settings = ControllerSettings {
            identity: identity.to_string(),
            lease_namespace: "unbounded-net".into(),
            lease_duration: Duration::from_secs(LEASE_SECONDS),
            renew_interval: Duration::from_secs(1),
            debounce: Duration::from_millis(100),
            ..ControllerSettings::default()
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let (ready_tx, ready) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("controller runtime");
            rt.spawn(async move {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .expect("client config");
                let client = kube::Client::try_from(config).expect("client");
                let controller = Controller::new(
                    KubeCluster::new(client, "unbounded-net-controller"),
                    settings,
                    Arc::new(SystemClock),
                );
                let addr = ([127, 0, 0, 1], metrics_port).into();
                let (_bound, _server) =
                    http::serve(addr, controller.metrics.clone(), controller.store.clone())
                        .await
                        .expect("health endpoint");
                let _ = ready_tx.send(());
                // Never asked to shut down gracefully: tests kill it.
                let (_keep, never) = tokio::sync::watch::channel(false);
                controller.run(never).await;
            });
            let _ = stopped.recv();
            rt.shutdown_background();
        });
        ready
            .recv_timeout(Duration::from_secs(30))
            .expect("controller came up");
        Self {
            stop: Some(stop),
            thread: Some(thread),
            identity: identity.to_string(),
            metrics_port,
        }
    }

    /// Crash: the runtime is dropped with every task in it; the Lease is not released.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
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
