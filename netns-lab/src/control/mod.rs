//! The lab's control plane — always the production code: the `unbounded_net` controller and
//! node agent shell — in one of two modes:
//!
//! - embedded: the in-memory cluster store ([`InMemoryCluster`]) in the lab process, two
//!   controller replicas (`Controller::run`) on the lab's runtime, and each node's agent
//!   (`node::shell::run`) on a thread inside its namespace;
//! - kube: etcd + kube-apiserver in a management namespace, two `unbounded-net-controller`
//!   processes on the host and one `unbounded-net-node` process inside each node namespace,
//!   all reaching the API over the management network ([`mgmt`]).
//!
//! The lab itself talks to either through the same [`Cluster`] seam ([`cluster_ops`]).

pub mod agent_thread;
pub mod apiserver;
pub mod cluster_ops;
mod kube_mode;
pub mod mgmt;
pub mod process;
pub(crate) mod ready;
mod replica;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use unbounded_net::cluster::{ClusterError, InMemoryCluster, KubeCluster};
use unbounded_net::controller::ControllerSettings;
use unbounded_net::core::plan_index::PlanSettings;
use unbounded_net::node::shell::AgentConfig;
use unbounded_scenario::Scenario;

use crate::registry::Registry;
use agent_thread::AgentThread;
use kube_mode::KubeMode;
use replica::ReplicaThread;

/// Where each agent serves /metrics and /readyz: its own namespace's loopback.
pub const AGENT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9102);
/// The controller's Lease (the production defaults).
const LEASE_NAMESPACE: &str = "unbounded-net";
const LEASE_NAME: &str = "unbounded-net-controller";
/// Short leases so a leader loss is taken over within seconds.
const LEASE_SECONDS: u64 = 4;
const RENEW_SECONDS: u64 = 1;
/// The agents' relist period: in-process reads are cheap; the binary takes whole seconds.
const EMBEDDED_RESYNC: Duration = Duration::from_millis(500);
const KUBE_RESYNC: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Kube,
}

impl Mode {
    /// How often the agents relist the cluster in this mode.
    pub fn agent_resync(self) -> Duration {
        match self {
            Mode::Embedded => EMBEDDED_RESYNC,
            Mode::Kube => KUBE_RESYNC,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Kube => "kube",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("API: {0}")]
    Api(#[from] ClusterError),
    #[error("kube mode: {0}")]
    Kube(String),
    #[error("agent on {node}: {detail}")]
    Agent { node: String, detail: String },
    #[error("not converged within {timeout:?}: {detail}")]
    NotConverged { timeout: Duration, detail: String },
    #[error("controller: {0}")]
    Controller(String),
}

/// How one node's agent runs.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    pub node: String,
    /// Position in the topology (management address, device name).
    pub index: usize,
    pub netns: String,
    pub state_dir: PathBuf,
    pub cni_dir: PathBuf,
    /// Unique machine-wide: boringtun's UAPI sockets share one directory.
    pub wg_dev: String,
    pub underlay_mtu: u32,
    pub resync: Duration,
}

impl AgentSpec {
    pub fn agent_config(&self) -> AgentConfig {
        AgentConfig {
            node_name: self.node.clone(),
            state_dir: self.state_dir.clone(),
            cni_conf_dir: self.cni_dir.clone(),
            force_cni: false,
            wireguard_device: self.wg_dev.clone(),
            force_userspace_wireguard: false,
            resync: self.resync,
            metrics_addr: AGENT_METRICS,
            plan_settings: PlanSettings {
                underlay_mtu: self.underlay_mtu,
                ..PlanSettings::default()
            },
            // Detected from the node's eth0 (the site's MTU), as in production.
            underlay_mtu: None,
        }
    }
}

/// The lab's API access, either mode.
#[derive(Clone)]
enum LabCluster {
    Memory(InMemoryCluster),
    Kube(KubeCluster),
}

/// Runs `$body` with `$c` bound to the concrete cluster.
macro_rules! on_cluster {
    ($self:expr, |$c:ident| $body:expr) => {
        match &$self.cluster {
            LabCluster::Memory($c) => $self.rt.block_on($body),
            LabCluster::Kube($c) => $self.rt.block_on($body),
        }
    };
}

enum Backend {
    Embedded {
        cluster: InMemoryCluster,
        replicas: BTreeMap<String, ReplicaThread>,
        agents: BTreeMap<String, AgentThread>,
    },
    Kube(Box<KubeMode>),
}

/// The running control plane and agents of one lab.
pub struct ControlPlane {
    pub mode: Mode,
    // Field order is drop order: agents and controllers before the runtime.
    backend: Backend,
    cluster: LabCluster,
    underlay_mtu: u32,
    next_replica: u8,
    rt: tokio::runtime::Runtime,
}

impl ControlPlane {
    /// Starts the API (store or server), applies the scenario's objects and starts two
    /// controller replicas. Nodes are added with [`ControlPlane::add_node`].
    pub fn start(
        mode: Mode,
        reg: &Registry,
        scenario: &Scenario,
        underlay_mtu: u32,
    ) -> Result<ControlPlane, ControlError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ControlError::Controller(e.to_string()))?;
        let (cluster, backend) = match mode {
            Mode::Embedded => {
                let store = InMemoryCluster::default();
                (
                    LabCluster::Memory(store.clone()),
                    Backend::Embedded {
                        cluster: store,
                        replicas: BTreeMap::new(),
                        agents: BTreeMap::new(),
                    },
                )
            }
            Mode::Kube => {
                let k = KubeMode::start(reg, &rt)?;
                (
                    LabCluster::Kube(k.cluster.clone()),
                    Backend::Kube(Box::new(k)),
                )
            }
        };
        let mut cp = ControlPlane {
            mode,
            backend,
            cluster,
            underlay_mtu,
            next_replica: 0,
            rt,
        };
        on_cluster!(cp, |c| cluster_ops::apply_objects(c, scenario))?;
        cp.start_replica()?;
        cp.start_replica()?;
        Ok(cp)
    }

    fn start_replica(&mut self) -> Result<String, ControlError> {
        let identity = format!("lab-controller-{}", (b'a' + self.next_replica) as char);
        self.next_replica += 1;
        match &mut self.backend {
            Backend::Embedded {
                cluster: c,
                replicas,
                ..
            } => {
                let settings = ControllerSettings {
                    identity: identity.clone(),
                    lease_namespace: LEASE_NAMESPACE.into(),
                    lease_name: LEASE_NAME.into(),
                    lease_duration: Duration::from_secs(LEASE_SECONDS),
                    renew_interval: Duration::from_secs(RENEW_SECONDS),
                    plan: PlanSettings {
                        underlay_mtu: self.underlay_mtu,
                        ..PlanSettings::default()
                    },
                    ..ControllerSettings::default()
                };
                replicas.insert(identity.clone(), ReplicaThread::start(c.clone(), settings));
            }
            Backend::Kube(k) => {
                k.start_controller(&identity, LEASE_SECONDS, RENEW_SECONDS)?;
            }
        }
        Ok(identity)
    }

    /// Registers a node's machine (its Node object).
    pub fn add_node(&self, node: &unbounded_scenario::Node) -> Result<(), ControlError> {
        Ok(on_cluster!(self, |c| cluster_ops::add_node(c, node))?)
    }

    /// Deletes a node's Node object (a node leaving the cluster).
    pub fn delete_node(&self, node: &str) -> Result<(), ControlError> {
        Ok(on_cluster!(self, |c| cluster_ops::delete_node(c, node))?)
    }

    pub fn pod_cidrs(&self) -> Result<BTreeMap<String, Vec<IpNet>>, ControlError> {
        Ok(on_cluster!(self, |c| cluster_ops::pod_cidrs(c))?)
    }

    /// Starts a node's agent (first time, after a crash, or after a stop).
    pub fn start_agent(&mut self, spec: &AgentSpec) -> Result<(), ControlError> {
        std::fs::create_dir_all(&spec.state_dir)
            .and_then(|()| std::fs::create_dir_all(&spec.cni_dir))
            .map_err(|e| ControlError::Agent {
                node: spec.node.clone(),
                detail: e.to_string(),
            })?;
        match &mut self.backend {
            Backend::Embedded {
                cluster: c, agents, ..
            } => {
                if let Some(old) = agents.remove(&spec.node) {
                    let _ = old.stop();
                }
                agents.insert(spec.node.clone(), AgentThread::start(c.clone(), spec));
                Ok(())
            }
            Backend::Kube(k) => k.start_agent(spec),
        }
    }

    /// Stops a node's agent as a restart or crash would (kernel state stays).
    pub fn stop_agent(&mut self, node: &str) -> Result<(), ControlError> {
        match &mut self.backend {
            Backend::Embedded { agents, .. } => match agents.remove(node) {
                Some(a) => a.stop().map_err(|detail| ControlError::Agent {
                    node: node.into(),
                    detail,
                }),
                None => Err(ControlError::Agent {
                    node: node.into(),
                    detail: "no agent running".into(),
                }),
            },
            Backend::Kube(k) => k.stop_agent(node),
        }
    }

    pub fn has_agent(&self, node: &str) -> bool {
        match &self.backend {
            Backend::Embedded { agents, .. } => agents.contains_key(node),
            Backend::Kube(k) => k.has_agent(node),
        }
    }

    fn dead_agent(&mut self) -> Option<(String, String)> {
        match &mut self.backend {
            Backend::Embedded { agents, .. } => {
                let node = agents.iter().find(|(_, a)| a.finished())?.0.clone();
                let a = agents.remove(&node)?;
                Some((node, a.stop().err().unwrap_or_else(|| "stopped".into())))
            }
            Backend::Kube(k) => k.dead_agent(),
        }
    }

    /// Waits until the controller labelled and allocated every `present` node and listed it
    /// in a SiteNodeSlice with its published key, every agent reports ready (`/readyz`: a
    /// reconcile pass without failures), and nothing the agents plan from changed for two of
    /// their relist periods (so each planned from the final state).
    pub fn wait_converged(
        &mut self,
        present: &[String],
        netns_of: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Duration, ControlError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let settle = self.mode.agent_resync() * 2 + Duration::from_millis(300);
        let mut stable: Option<(String, Instant)> = None;
        loop {
            if let Some((node, detail)) = self.dead_agent() {
                return Err(ControlError::Agent { node, detail });
            }
            let missing = on_cluster!(self, |c| cluster_ops::missing(c, present))?;
            let not_ready: Vec<String> = if missing.is_empty() {
                present
                    .iter()
                    .filter(|n| {
                        netns_of
                            .get(*n)
                            .is_none_or(|ns| !ready::agent_ready(ns, AGENT_METRICS))
                    })
                    .map(|n| format!("{n}: agent not ready"))
                    .collect()
            } else {
                missing
            };
            if not_ready.is_empty() {
                let fp = on_cluster!(self, |c| cluster_ops::fingerprint(c))?;
                match &stable {
                    Some((prev, since)) if *prev == fp => {
                        if since.elapsed() >= settle {
                            return Ok(start.elapsed());
                        }
                    }
                    _ => stable = Some((fp, Instant::now())),
                }
            } else {
                stable = None;
                if Instant::now() > deadline {
                    return Err(ControlError::NotConverged {
                        timeout,
                        detail: not_ready.join("; "),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leading controller replica dies (no Lease release); a replacement standby starts.
    /// Returns the old and new leader and how long the takeover took.
    pub fn leader_loss(&mut self) -> Result<String, ControlError> {
        let holder = on_cluster!(self, |c| cluster_ops::lease_holder(
            c,
            LEASE_NAMESPACE,
            LEASE_NAME
        ))?
        .ok_or_else(|| ControlError::Controller("no replica holds the Lease".into()))?;
        let before = self.pod_cidrs()?;
        let killed_at = Instant::now();
        match &mut self.backend {
            Backend::Embedded { replicas, .. } => match replicas.remove(&holder) {
                Some(t) => t.crash(),
                None => {
                    return Err(ControlError::Controller(format!(
                        "the Lease holder {holder} is not one of the lab's replicas"
                    )));
                }
            },
            Backend::Kube(k) => k.crash_controller(&holder)?,
        }
        let standby = self.start_replica()?;
        let deadline = killed_at + Duration::from_secs(LEASE_SECONDS * 3 + 10);
        let new = loop {
            let h = on_cluster!(self, |c| cluster_ops::lease_holder(
                c,
                LEASE_NAMESPACE,
                LEASE_NAME
            ))?;
            if let Some(h) = h.filter(|h| *h != holder) {
                break h;
            }
            if Instant::now() > deadline {
                return Err(ControlError::Controller(format!(
                    "no replica took the Lease over from {holder} within {:?}",
                    deadline - killed_at
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let took = killed_at.elapsed();
        let after = self.pod_cidrs()?;
        if before != after {
            return Err(ControlError::Controller(format!(
                "pod CIDRs changed across the leader change: {before:?} -> {after:?}"
            )));
        }
        Ok(format!(
            "leader {holder} killed; {new} took the Lease over in {:.1} s (standby {standby} started); pod CIDRs unchanged",
            took.as_secs_f64()
        ))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Backend::Embedded {
            replicas, agents, ..
        } = &mut self.backend
        {
            for (_, a) in std::mem::take(agents) {
                let _ = a.stop();
            }
            for (_, t) in std::mem::take(replicas) {
                t.crash();
            }
        }
    }
}
