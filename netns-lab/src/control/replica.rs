//! Embedded mode's controller replicas: the production `Controller` over the in-memory store,
//! each on its own thread and runtime.

use std::sync::Arc;

use tokio::sync::watch;
use unbounded_net::cluster::InMemoryCluster;
use unbounded_net::controller::{Controller, ControllerSettings, SystemClock};

/// An embedded controller replica on its own thread and runtime (the replica's future need
/// not be `Send`). Stopping it drops the future mid-flight: a crash, the Lease not released.
pub struct ReplicaThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReplicaThread {
    pub fn start(cluster: InMemoryCluster, settings: ControllerSettings) -> ReplicaThread {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                tracing::error!("cannot build a runtime for a controller replica");
                return;
            };
            let controller = Controller::new(cluster, settings, Arc::new(SystemClock));
            rt.block_on(async move {
                let (_keep, shutdown) = watch::channel(false);
                tokio::select! {
                    _ = controller.run(shutdown) => {}
                    _ = stop_rx => {}
                }
            });
        });
        ReplicaThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn crash(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReplicaThread {
    fn drop(&mut self) {
        self.halt();
    }
}
