//! Kube mode's processes: the API server (in the management namespace), the controller
//! replicas (`unbounded-net-controller`, on the host) and one `unbounded-net-node` per node
//! namespace, reaching the API server over the management network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use unbounded_net::cluster::KubeCluster;

use super::apiserver::{ApiServer, binaries};
use super::mgmt::Mgmt;
use super::process::LabProcess;
use super::{AGENT_METRICS, AgentSpec, ControlError};
use crate::registry::{self, Registry};

/// Field order is drop order: agents, then controllers, then the API server.
pub struct KubeMode {
    agents: BTreeMap<String, LabProcess>,
    controllers: BTreeMap<String, LabProcess>,
    api: ApiServer,
    mgmt: Mgmt,
    pub cluster: KubeCluster,
    reg: Registry,
    dir: PathBuf,
}

fn kube_err(e: impl std::fmt::Display) -> ControlError {
    ControlError::Kube(e.to_string())
}

/// One of our binaries, next to the running `netns-lab` (same cargo profile).
fn our_binary(name: &str) -> Result<PathBuf, ControlError> {
    binaries::our_binary(name).map_err(kube_err)
}

impl KubeMode {
    pub fn start(reg: &Registry, rt: &tokio::runtime::Runtime) -> Result<KubeMode, ControlError> {
        // Fail before building anything when a binary is missing (`Lab::up` checked, and
        // built the Go ones, before the topology; this covers other callers).
        binaries::ensure_kube_mode().map_err(kube_err)?;
        let dir = registry::lab_dir(&reg.lab()).join("kube");
        let mgmt = Mgmt::create(reg).map_err(kube_err)?;
        let api = ApiServer::start(reg, &mgmt.netns, &dir).map_err(kube_err)?;
        let kubeconfig = api.kubeconfig.clone();
        let cluster = rt.block_on(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).map_err(kube_err)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(kube_err)?;
            let client = kube::Client::try_from(config).map_err(kube_err)?;
            Ok::<_, ControlError>(KubeCluster::new(client, "netns-lab"))
        })?;
        Ok(KubeMode {
            agents: BTreeMap::new(),
            controllers: BTreeMap::new(),
            api,
            mgmt,
            cluster,
            reg: reg.clone(),
            dir,
        })
    }

    fn kubeconfig(&self) -> String {
        self.api.kubeconfig.display().to_string()
    }

    pub fn start_controller(
        &mut self,
        identity: &str,
        lease_seconds: u64,
        renew_seconds: u64,
    ) -> Result<(), ControlError> {
        let p = LabProcess::start(
            &self.reg,
            identity,
            None,
            &our_binary("unbounded-net-controller")?,
            &[
                format!("--kubeconfig={}", self.kubeconfig()),
                "--listen=127.0.0.1:0".into(),
                format!("--identity={identity}"),
                format!("--lease-duration-seconds={lease_seconds}"),
                format!("--renew-seconds={renew_seconds}"),
            ],
            &self.dir.join(format!("{identity}.log")),
        )
        .map_err(kube_err)?;
        self.controllers.insert(identity.into(), p);
        Ok(())
    }

    /// SIGKILL the replica `identity` (it cannot release its Lease).
    pub fn crash_controller(&mut self, identity: &str) -> Result<(), ControlError> {
        let p = self.controllers.remove(identity).ok_or_else(|| {
            ControlError::Controller(format!(
                "the Lease holder {identity} is not one of the lab's replicas"
            ))
        })?;
        p.crash();
        Ok(())
    }

    pub fn start_agent(&mut self, spec: &AgentSpec) -> Result<(), ControlError> {
        self.mgmt
            .attach(&spec.netns, spec.index)
            .map_err(kube_err)?;
        if let Some(mut old) = self.agents.remove(&spec.node) {
            old.terminate(Duration::from_secs(3));
        }
        let log = spec
            .state_dir
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join("agent.log");
        let p = LabProcess::start(
            &self.reg,
            &format!("agent {}", spec.node),
            Some(&spec.netns),
            &our_binary("unbounded-net-node")?,
            &[
                format!("--node-name={}", spec.node),
                format!("--kubeconfig={}", self.kubeconfig()),
                format!("--state-dir={}", spec.state_dir.display()),
                format!("--cni-conf-dir={}", spec.cni_dir.display()),
                format!("--wireguard-device={}", spec.wg_dev),
                format!("--resync-seconds={}", spec.resync.as_secs().max(1)),
                format!("--metrics-addr={AGENT_METRICS}"),
                // The lab's checks read the netlink dataplane's devices and routes.
                "--dataplane=netlink".to_string(),
            ],
            &log,
        )
        .map_err(kube_err)?;
        self.agents.insert(spec.node.clone(), p);
        Ok(())
    }

    /// SIGTERM (the agent has no handler: it exits at once, leaving the kernel state).
    pub fn stop_agent(&mut self, node: &str) -> Result<(), ControlError> {
        let mut p = self
            .agents
            .remove(node)
            .ok_or_else(|| ControlError::Agent {
                node: node.into(),
                detail: "no agent running".into(),
            })?;
        p.terminate(Duration::from_secs(3));
        Ok(())
    }

    pub fn has_agent(&self, node: &str) -> bool {
        self.agents.contains_key(node)
    }

    pub fn dead_agent(&mut self) -> Option<(String, String)> {
        let (node, why) = self
            .agents
            .iter_mut()
            .find_map(|(n, p)| p.exited().map(|w| (n.clone(), w)))?;
        self.agents.remove(&node);
        Some((node, why))
    }
}
