//! Embedded mode's node agents: the production agent shell (`node::shell::run`, the code
//! `unbounded-net-node` runs) on a thread inside the node's namespace, over the in-process
//! cluster store.
//!
//! Everything the shell opens — netlink sockets, the probe and metrics sockets, the boringtun
//! daemon it starts — lives in the namespace the thread entered. Stopping drops the thread's
//! runtime (every task of the shell ends) and leaves the kernel state in place, as a killed
//! agent process does; a new agent adopts it.

use tokio::sync::oneshot;
use unbounded_net::cluster::InMemoryCluster;
use unbounded_net::node::shell;

use super::AgentSpec;
use crate::netns;

/// A running in-process agent.
pub struct AgentThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Result<(), String>, netns::NetnsError>>>,
}

impl AgentThread {
    pub fn start(cluster: InMemoryCluster, spec: &AgentSpec) -> AgentThread {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let cfg = spec.agent_config();
        let node = spec.node.clone();
        let thread = netns::spawn_in(&spec.netns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let outcome = rt.block_on(async move {
                tokio::select! {
                    r = shell::run(cluster, cfg) => r.map_err(|e| e.to_string()),
                    _ = stop_rx => Ok(()),
                }
            });
            // Dropping the runtime ends the shell's spawned tasks (reconcile loop, prober,
            // responder, metrics): nothing of this agent keeps running.
            drop(rt);
            if let Err(e) = &outcome {
                tracing::warn!(%node, error = %e, "agent shell stopped");
            }
            outcome
        });
        AgentThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Whether the shell returned on its own (an error).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the agent (kernel state stays) and reports how it ended.
    pub fn stop(mut self) -> Result<(), String> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => Err(e.to_string()),
            Some(Err(_)) => Err("agent thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for AgentThread {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
