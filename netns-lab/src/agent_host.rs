//! Runs the node agent library for one lab node, on a thread inside the node's namespace:
//! the netlink dataplane reconciler, the health prober and responder, the CNI conflist and the
//! masquerade table — the same code `unbounded-net-node` runs — plus the lab's userspace
//! WireGuard device ([`crate::wireguard`]).
//!
//! Stopping an agent leaves the kernel state in place (fail static); a new agent adopts it,
//! which is what the agent-restart check exercises.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, oneshot, watch};
use unbounded_net::core::NodeDataplane;
use unbounded_net::core::dataplane::HEALTH_PROBE_PORT;
use unbounded_net::core::node_plan::health_address;
use unbounded_net::node::Reconciler;
use unbounded_net::node::agent::run_reconcile_loop;
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::probe::ProbeTable;
use unbounded_net::node::probe::socket::{ProbeCounters, run_prober, run_responder};
use unbounded_net::node::{cni, masquerade};

use crate::netns;
use crate::wireguard::WireGuardDevice;

/// Where and how one node's agent runs.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub node: String,
    pub netns: String,
    /// The node's CNI config directory (`/etc/cni/net.d` on a real node).
    pub cni_dir: PathBuf,
    pub wg_dev: String,
    pub wg_key: PathBuf,
    pub wg_log: PathBuf,
    /// Every node's pod CIDRs as the control plane last published them (shared, updated on
    /// re-plans): which prefixes belong to which WireGuard peer.
    pub pod_cidrs: Arc<std::sync::Mutex<BTreeMap<String, Vec<ipnet::IpNet>>>>,
}

/// A running agent.
pub struct AgentHandle {
    pub spec: AgentSpec,
    plan_tx: watch::Sender<Option<NodeDataplane>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<Result<(), String>, netns::NetnsError>>>,
    /// Passes the reconciler completed (to wait for convergence).
    pub passes: watch::Receiver<u64>,
}

impl AgentHandle {
    /// Starts the agent with its first plan.
    pub fn start(spec: AgentSpec, plan: NodeDataplane) -> AgentHandle {
        let (plan_tx, plan_rx) = watch::channel(Some(plan));
        let (stop_tx, stop_rx) = oneshot::channel();
        let (pass_tx, pass_rx) = watch::channel(0u64);
        let s = spec.clone();
        let thread = netns::spawn_in(&spec.netns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(agent_main(s, plan_rx, stop_rx, pass_tx))
        });
        AgentHandle {
            spec,
            plan_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
            passes: pass_rx,
        }
    }

    pub fn set_plan(&self, plan: NodeDataplane) {
        self.plan_tx.send_replace(Some(plan));
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

    /// Whether the agent stopped on its own (an error).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

async fn agent_main(
    spec: AgentSpec,
    mut plan_rx: watch::Receiver<Option<NodeDataplane>>,
    stop: oneshot::Receiver<()>,
    passes: watch::Sender<u64>,
) -> Result<(), String> {
    let first = plan_rx.borrow().clone().ok_or("no plan")?;
    let pod_cidrs = first.cni.ranges.clone();
    let mut dp = NetlinkDataplane::connect().map_err(|e| e.to_string())?;
    dp.ensure_pod_bridge(cni::BRIDGE, &pod_cidrs)
        .await
        .map_err(|e| e.to_string())?;

    let mut wg = WireGuardDevice::new(&spec.wg_dev, &spec.netns, &spec.wg_key);
    let apply_side = |plan: &NodeDataplane,
                      wg: &mut WireGuardDevice,
                      unhealthy: &BTreeSet<String>|
     -> Result<(), String> {
        if !plan.wireguard.peers.is_empty() {
            let mtu = plan.routes.values().map(|r| r.mtu).max().unwrap_or(1420);
            wg.ensure_running(&spec.wg_log, mtu)
                .map_err(|e| e.to_string())?;
            let own = spec.pod_cidrs.lock().expect("pod CIDR map").clone();
            wg.sync(&plan.wireguard, unhealthy, &own)
                .map_err(|e| e.to_string())?;
        }
        masquerade::apply(&plan.masquerade).map_err(|e| e.to_string())?;
        cni::write_conflist(&spec.cni_dir, &plan.cni, false).map_err(|e| e.to_string())?;
        Ok(())
    };
    apply_side(&first, &mut wg, &BTreeSet::new())?;

    let origin = Instant::now();
    let table = Arc::new(Mutex::new(ProbeTable::default()));
    table.lock().await.sync(&first.probes, origin.elapsed());
    let counters = Arc::new(ProbeCounters::default());
    let (unhealthy_tx, unhealthy_rx) = watch::channel(BTreeSet::new());

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = health_address(&pod_cidrs) {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(addr, HEALTH_PROBE_PORT))
            .await
            .map_err(|e| format!("health responder on {addr}: {e}"))?;
        let c = counters.clone();
        tasks.spawn(async move {
            let _ = run_responder(sock, c).await;
        });
    }
    // Probes leave from the node's overlay address (the pod bridge's), so replies come back
    // through the tunnel; from 0.0.0.0 the kernel would pick the underlay address, which a
    // peer across NAT or the internet cannot answer.
    let probe_src = health_address(&pod_cidrs)
        .map(|a| SocketAddr::new(a, 0))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let prober_sock = tokio::net::UdpSocket::bind(probe_src)
        .await
        .map_err(|e| format!("prober on {probe_src}: {e}"))?;
    {
        let (t, c) = (table.clone(), counters.clone());
        tasks.spawn(async move {
            let _ = run_prober(prober_sock, t, origin, unhealthy_tx, c, |_, _| {}).await;
        });
    }
    let mut health_rx = unhealthy_rx.clone();
    let reconciler = Reconciler::new(dp, spec.wg_dev.clone());
    let loop_plan = plan_rx.clone();
    tasks.spawn(async move {
        run_reconcile_loop(reconciler, loop_plan, unhealthy_rx, move |_, _| {
            passes.send_modify(|n| *n += 1);
        })
        .await;
    });

    let mut stop = stop;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = health_rx.changed() => {
                if changed.is_err() { break; }
                let unhealthy = health_rx.borrow_and_update().clone();
                let Some(plan) = plan_rx.borrow().clone() else { continue };
                if let Err(e) = apply_side(&plan, &mut wg, &unhealthy) {
                    tracing::warn!(node = %spec.node, error = %e, "moving WireGuard prefixes off unhealthy peers failed");
                }
            }
            changed = plan_rx.changed() => {
                if changed.is_err() { break; }
                let Some(plan) = plan_rx.borrow_and_update().clone() else { continue };
                table.lock().await.sync(&plan.probes, origin.elapsed());
                let unhealthy = health_rx.borrow().clone();
                if let Err(e) = apply_side(&plan, &mut wg, &unhealthy) {
                    tracing::warn!(node = %spec.node, error = %e, "applying WireGuard/CNI/masquerade failed");
                }
            }
        }
    }
    tasks.abort_all();
    Ok(())
}
