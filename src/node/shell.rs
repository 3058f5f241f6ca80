//! The agent's I/O shell: reads the cluster through the [`Cluster`] seam, plans this node
//! with the pure core, and drives the WireGuard device, the netlink dataplane, the CNI
//! conflist, masquerade and the health probes. Fail static: when the API server is away the
//! last plan stays in force and nothing is torn down.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, watch};
use tracing::{error, info, warn};

use super::agent::run_reconcile_loop;
use super::dataplane::{ReconcileReport, Reconciler};
use super::ebpf::{DataplaneChoice, EbpfDataplane};
use super::metrics::{self, NodeMetrics};
use super::netlink::NetlinkDataplane;
use super::probe::ProbeTable;
use super::probe::socket::{ProbeCounters, run_prober, run_responder};
use super::wireguard::WireGuardDevice;
use super::wireguard::keys::{self, PrivateKey};
use super::{cni, masquerade};
use crate::api::{UNDERLAY_MTU_ANNOTATION, WG_PUBKEY_ANNOTATION};
use crate::cluster::{Cluster, MetadataPatch};
use crate::controller::store::{Store, spawn_reflectors};
use crate::core::dataplane::{HEALTH_PROBE_PORT, NodeDataplane};
use crate::core::node_plan::{health_address, plan_node};
use crate::core::plan_index::{PlanIndex, PlanSettings};
use crate::core::steering;

/// Changes arriving this close together are planned once.
const CHANGE_BATCH: Duration = Duration::from_millis(50);

/// File (in the state directory) holding the PID of a boringtun daemon the agent started.
pub const USERSPACE_PID_FILE: &str = "boringtun.pid";

/// Everything the agent needs to know about its host.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    pub state_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub force_cni: bool,
    pub wireguard_device: String,
    pub force_userspace_wireguard: bool,
    /// How often the cluster is read again (the shell is a periodic relist).
    pub resync: Duration,
    pub metrics_addr: SocketAddr,
    /// `plan_settings.underlay_mtu` is the MTU assumed for peers that published none.
    pub plan_settings: PlanSettings,
    /// This node's underlay MTU: `None` detects it ([`super::underlay_mtu`]).
    pub underlay_mtu: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Dataplane(#[from] super::dataplane::DataplaneError),
    #[error(transparent)]
    WireGuard(#[from] super::wireguard::WireGuardError),
    #[error(transparent)]
    Ebpf(#[from] super::ebpf::EbpfError),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

async fn udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Runs the agent with the netlink dataplane until the process is stopped (what the lab and
/// tests use: they run one agent per namespace in one process, which the eBPF dataplane's
/// thread-bound BPF and netlink calls do not support).
pub async fn run<C: Cluster>(cluster: C, cfg: AgentConfig) -> Result<(), AgentError> {
    run_with(cluster, cfg, DataplaneChoice::Netlink).await
}

/// Runs the agent with the chosen dataplane until the process is stopped. An eBPF choice on
/// a kernel that cannot run it fails before anything is changed, saying why.
pub async fn run_with<C: Cluster>(
    cluster: C,
    cfg: AgentConfig,
    dataplane: DataplaneChoice,
) -> Result<(), AgentError> {
    if matches!(dataplane, DataplaneChoice::Ebpf(_)) {
        super::ebpf::loader::check_support()?;
    }
    let (key, created) = keys::load_or_create(&cfg.state_dir)?;
    info!(public_key = %key.public_base64(), created, "WireGuard identity");
    let key = Arc::new(key);

    NetlinkDataplane::enable_forwarding()?;
    let dp = NetlinkDataplane::connect()?;
    let underlay_mtu = super::underlay_mtu::resolve(dp.handle(), cfg.underlay_mtu).await;
    let wg = WireGuardDevice::ensure(
        dp.handle(),
        &cfg.wireguard_device,
        cfg.force_userspace_wireguard,
    )
    .await?;
    info!(device = %wg.name, backend = %wg.backend, "WireGuard backend");
    if let Some(pid) = wg.started_daemon {
        let _ = std::fs::write(cfg.state_dir.join(USERSPACE_PID_FILE), pid.to_string());
    }
    let wg = Arc::new(wg);

    let counters = Arc::new(ProbeCounters::default());
    let metrics = NodeMetrics::new(counters.clone());
    metrics::serve(cfg.metrics_addr, metrics.clone())
        .await
        .map_err(|source| AgentError::Metrics {
            addr: cfg.metrics_addr,
            source,
        })?;
    let (plan_tx, plan_rx) = watch::channel::<Option<NodeDataplane>>(None);
    let (health_tx, health_rx) = watch::channel(BTreeSet::new());
    tokio::spawn(run_wireguard_loop(
        wg.clone(),
        key.clone(),
        plan_rx.clone(),
        health_rx.clone(),
    ));
    let m = metrics.clone();
    let on_pass = move |rep: &ReconcileReport, took: Duration| {
        m.reconcile_seconds.observe(took.as_secs_f64());
        m.dataplane_ops.inc_by(rep.apply.applied as u64);
        m.netlink_messages.inc_by(rep.apply.messages as u64);
        m.op_failures.inc_by(rep.apply.failures.len() as u64);
        m.plan_problems.set(rep.problems.len() as i64);
        if rep.apply.failures.is_empty() {
            m.ready.store(true, Ordering::Relaxed);
        }
    };
    let wireguard_device = cfg.wireguard_device.clone();
    match dataplane {
        DataplaneChoice::Netlink => tokio::spawn(run_reconcile_loop(
            Reconciler::new(dp.clone(), wireguard_device),
            plan_rx,
            health_rx,
            on_pass,
        )),
        DataplaneChoice::Ebpf(ebpf) => {
            let loaded = EbpfDataplane::connect(&ebpf).await?;
            info!(pin_dir = %ebpf.pin_dir.display(), "eBPF dataplane loaded");
            tokio::spawn(super::ebpf::export::run_exporter(
                ebpf.pin_dir.clone(),
                metrics.clone(),
                Duration::from_secs(5),
            ));
            tokio::spawn(run_reconcile_loop(
                Reconciler::new(loaded, wireguard_device),
                plan_rx,
                health_rx,
                on_pass,
            ))
        }
    };

    let store = Arc::new(Store::default());
    // Other nodes come from the SiteNodeSlices (and pool status), not from Node objects: the
    // agent watches O(nodes / 500) small objects and needs no permission to list Nodes.
    let mut reflectors = tokio::task::JoinSet::new();
    let kinds = spawn_reflectors(&cluster, &store, false, &mut reflectors);
    let origin = Instant::now();
    let table = Arc::new(Mutex::new(ProbeTable::default()));
    let mut prober_started = false;
    let mut published = false;
    let mut last: Option<NodeDataplane> = None;
    let mut dp = dp;
    loop {
        if !published {
            published = publish_key(&cluster, &cfg.node_name, &key, underlay_mtu).await;
        }
        match (store.synced_kinds() >= kinds).then(|| store.with(|o| o.agent_snapshot())) {
            None => {
                metrics.api_errors.inc();
                warn!("the cluster has not been read yet; keeping the data plane as it is");
            }
            Some(mut snap) => {
                snap.set_own_underlay_mtu(&cfg.node_name, underlay_mtu);
                let own_cidrs = snap
                    .nodes
                    .get(&cfg.node_name)
                    .map(|n| n.pod_cidrs.clone())
                    .unwrap_or_default();
                let index = PlanIndex::new(&snap, cfg.plan_settings);
                match plan_node(&index, &cfg.node_name) {
                    Err(e) => warn!(error = %e, "no plan for this node yet"),
                    Ok(plan) => {
                        for p in &plan.problems {
                            warn!(problem = %p, "plan problem");
                        }
                        let new = plan.dataplane;
                        if last.as_ref() != Some(&new) {
                            let changes = crate::core::describe(&crate::core::diff(
                                last.as_ref().unwrap_or(&NodeDataplane::default()),
                                &new,
                            ));
                            info!(%changes, "plan changed");
                            apply_side_effects(&cfg, &mut dp, &new, &own_cidrs, &metrics).await;
                            table.lock().await.sync(&new.probes, origin.elapsed());
                            if !prober_started && !own_cidrs.is_empty() {
                                prober_started = start_prober(
                                    &own_cidrs, &table, origin, &health_tx, &counters, &metrics,
                                )
                                .await;
                            }
                            plan_tx.send_replace(Some(new.clone()));
                            last = Some(new);
                        }
                    }
                }
            }
        }
        // Watches wake the loop at once; the resync re-plans anyway (and retries the key).
        tokio::select! {
            _ = store.changed() => tokio::time::sleep(CHANGE_BATCH).await,
            _ = tokio::time::sleep(cfg.resync) => {}
        }
    }
}

/// Publishes the key and the underlay MTU in one write: peers need both to plan their links.
async fn publish_key<C: Cluster>(
    cluster: &C,
    node: &str,
    key: &PrivateKey,
    underlay_mtu: u32,
) -> bool {
    let mut patch = MetadataPatch::default();
    patch
        .annotations
        .insert(WG_PUBKEY_ANNOTATION.to_string(), Some(key.public_base64()));
    patch.annotations.insert(
        UNDERLAY_MTU_ANNOTATION.to_string(),
        Some(underlay_mtu.to_string()),
    );
    match cluster.patch_metadata::<Node>(None, node, &patch).await {
        Ok(_) => {
            info!(node, "published WireGuard public key");
            true
        }
        Err(e) => {
            warn!(node, error = %e, "cannot publish the WireGuard public key yet");
            false
        }
    }
}

async fn start_prober(
    own_cidrs: &[ipnet::IpNet],
    table: &Arc<Mutex<ProbeTable>>,
    origin: Instant,
    health_tx: &watch::Sender<BTreeSet<String>>,
    counters: &Arc<ProbeCounters>,
    metrics: &Arc<NodeMetrics>,
) -> bool {
    // Probe from the overlay address so replies come back through the tunnel under test.
    let Some(src) = health_address(own_cidrs) else {
        return false;
    };
    let sock = match udp(SocketAddr::new(src, 0)).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%src, error = %e, "cannot bind the prober yet");
            return false;
        }
    };
    // The responder answers on the same overlay address, so replies carry the address the
    // peer probed (an unbound socket would answer from whatever address routing picks).
    match udp(SocketAddr::new(src, HEALTH_PROBE_PORT)).await {
        Ok(responder) => {
            tokio::spawn(run_responder(responder, counters.clone()));
        }
        Err(e) => {
            warn!(%src, error = %e, "cannot bind the probe responder yet");
            return false;
        }
    }
    let m = metrics.clone();
    let rtt = move |_peer: &str, rtt: Duration| m.probe_rtt_seconds.observe(rtt.as_secs_f64());
    tokio::spawn(run_prober(
        sock,
        table.clone(),
        origin,
        health_tx.clone(),
        counters.clone(),
        rtt,
    ));
    // Health gauges and the transition counter follow the published unhealthy set.
    let mut rx = health_tx.subscribe();
    let (t, m) = (table.clone(), metrics.clone());
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let down = rx.borrow_and_update().clone();
            m.health_transitions.inc();
            for peer in t.lock().await.peers() {
                m.set_peer_health(&peer, !down.contains(&peer));
            }
        }
    });
    true
}

async fn apply_side_effects(
    cfg: &AgentConfig,
    dp: &mut NetlinkDataplane,
    plan: &NodeDataplane,
    own_cidrs: &[ipnet::IpNet],
    metrics: &NodeMetrics,
) {
    metrics.tunnel_peers.set(plan.tunnels.len() as i64);
    metrics
        .wireguard_peers
        .set(plan.wireguard.peers.len() as i64);
    metrics.routes.set(plan.routes.len() as i64);
    if !own_cidrs.is_empty()
        && let Err(e) = dp.ensure_pod_bridge(cni::BRIDGE, own_cidrs).await
    {
        warn!(error = %e, "pod bridge");
    }
    match cni::write_conflist(&cfg.cni_conf_dir, &plan.cni, cfg.force_cni) {
        Ok(outcome) => info!(?outcome, "CNI config"),
        Err(e) => error!(error = %e, "CNI config not written"),
    }
    if let Err(e) = masquerade::apply(&plan.masquerade) {
        error!(error = %e, "masquerade");
    }
}

/// Keeps the WireGuard device in line with the plan AND the peers' health: a prefix several
/// gateways could carry sits on the one peer its route selects now
/// ([`steering::wireguard_effective`]), so it moves when that gateway fails.
async fn run_wireguard_loop(
    wg: Arc<WireGuardDevice>,
    key: Arc<PrivateKey>,
    mut plan: watch::Receiver<Option<NodeDataplane>>,
    mut unhealthy: watch::Receiver<BTreeSet<String>>,
) {
    let mut applied: Option<crate::core::WireGuardConfig> = None;
    loop {
        let current = plan.borrow_and_update().clone();
        let down = unhealthy.borrow_and_update().clone();
        if let Some(p) = current {
            let want = steering::wireguard_effective(&p, &down);
            if applied.as_ref() != Some(&want) {
                let (wg, key, cfg) = (wg.clone(), key.clone(), want.clone());
                let result = tokio::task::spawn_blocking(move || {
                    wg.configure(&key, cfg.listen_port, &cfg.peers)
                })
                .await;
                match result {
                    Ok(Ok(report)) => {
                        info!(
                            added = report.added.len(),
                            removed = report.removed,
                            skipped = report.skipped.len(),
                            "WireGuard peers"
                        );
                        applied = Some(want);
                    }
                    Ok(Err(e)) => error!(error = %e, "WireGuard"),
                    Err(e) => error!(error = %e, "WireGuard task"),
                }
                if applied.is_none() {
                    tokio::time::sleep(super::agent::RETRY_DELAY).await;
                    continue;
                }
            }
        }
        tokio::select! {
            r = plan.changed() => if r.is_err() { return },
            r = unhealthy.changed() => if r.is_err() { return },
        }
    }
}

/// `--cleanup`: removes every tunnel, route, the WireGuard device (stopping a boringtun the
/// agent started), the pod bridge, the masquerade table, the conflist and the key. Carries
/// on past failures and reports them all.
pub async fn cleanup(cfg: &AgentConfig) -> Vec<String> {
    let mut errors = Vec::new();
    match NetlinkDataplane::connect() {
        Ok(mut dp) => {
            match dp.remove_all().await {
                Ok(r) => errors.extend(
                    r.failures
                        .iter()
                        .map(|f| format!("{}: {}", f.op, f.message)),
                ),
                Err(e) => errors.push(e.to_string()),
            }
            for link in [cfg.wireguard_device.as_str(), cni::BRIDGE] {
                if let Err(e) = dp.delete_link_by_name(link).await {
                    errors.push(e);
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let pid_file = cfg.state_dir.join(USERSPACE_PID_FILE);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // Only the daemon this agent started, by its recorded PID.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    if let Err(e) = masquerade::remove() {
        errors.push(e.to_string());
    }
    if let Err(e) = cni::remove_conflist(&cfg.cni_conf_dir) {
        errors.push(e.to_string());
    }
    let _ = std::fs::remove_file(cfg.state_dir.join(keys::KEY_FILE));
    errors
}
