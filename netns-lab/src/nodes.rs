//! A lab node's life cycle: registered with the API (its Node object), its agent started,
//! stopped or killed with the machine, its test pod attached, joining and leaving.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use unbounded_net::node::wireguard::UAPI_DIR;

use crate::cmd;
use crate::control::AgentSpec;
use crate::lab::{Lab, LabError};
use crate::pods;
use crate::traffic::EchoServer;

/// How long a bring-up or a join may take to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

fn io(e: impl std::fmt::Display) -> LabError {
    LabError::Io(e.to_string())
}

impl Lab {
    fn scenario_node(&self, node: &str) -> Result<unbounded_scenario::Node, LabError> {
        self.scenario
            .topology
            .nodes
            .iter()
            .find(|n| n.name == node)
            .cloned()
            .ok_or_else(|| LabError::Io(format!("no node {node} in the scenario")))
    }

    /// Creates the node's Node object (what its kubelet does when the machine boots).
    pub fn register_node(&mut self, node: &str) -> Result<(), LabError> {
        let n = self.scenario_node(node)?;
        self.cp().add_node(&n)?;
        Ok(())
    }

    /// A machine-wide unique WireGuard device name (boringtun's UAPI sockets share one
    /// directory across namespaces).
    fn wg_dev(&self, index: usize) -> String {
        let h = self
            .reg
            .lab()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            & 0xffff;
        format!("nlw{h:04x}{index}")
    }

    fn agent_spec(&self, node: &str) -> Result<AgentSpec, LabError> {
        let index = self
            .topo
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::Io(format!("no node {node} in the lab")))?;
        let dir = self.node_dir(node);
        Ok(AgentSpec {
            node: node.into(),
            index,
            netns: self.node_netns(node).expect("topology node"),
            state_dir: dir.join("state"),
            cni_dir: dir.join("net.d"),
            wg_dev: self.wg_dev(index),
            underlay_mtu: self
                .scenario
                .topology
                .sites
                .iter()
                .map(|s| s.mtu)
                .min()
                .unwrap_or(1500),
            resync: self
                .cp
                .as_ref()
                .map(|c| c.mode)
                .unwrap_or(crate::control::Mode::Embedded)
                .agent_resync(),
        })
    }

    /// Starts (or restarts) the node's agent.
    pub fn start_agent(&mut self, node: &str) -> Result<(), LabError> {
        let spec = self.agent_spec(node)?;
        self.reg
            .add_path(&Path::new(UAPI_DIR).join(format!("{}.sock", spec.wg_dev)))?;
        self.cp().start_agent(&spec)?;
        Ok(())
    }

    /// The agent process ends (restart, crash); the kernel state stays.
    pub fn stop_agent(&mut self, node: &str) -> Result<(), LabError> {
        self.cp().stop_agent(node)?;
        Ok(())
    }

    /// The machine dies: its agent and every process inside it (its WireGuard daemon)
    /// killed, its underlay link down.
    pub fn kill_machine(&mut self, node: &str) -> Result<(), LabError> {
        if self.cp().has_agent(node) {
            let _ = self.cp().stop_agent(node);
        }
        let ns = self.node_netns(node).ok_or_else(|| io(node))?;
        let pids = cmd::stdout("ip", &["netns", "pids", &ns]).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|p| *p != std::process::id() as i32)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The daemon's socket outlives it; a new agent must start a fresh daemon.
        let spec = self.agent_spec(node)?;
        let _ = std::fs::remove_file(Path::new(UAPI_DIR).join(format!("{}.sock", spec.wg_dev)));
        cmd::ip_batch(&ns, &["link set eth0 down".into()]).map_err(io)
    }

    /// The machine boots again: underlay up, agent started.
    pub fn boot_machine(&mut self, node: &str) -> Result<(), LabError> {
        let ns = self.node_netns(node).ok_or_else(|| io(node))?;
        let router = self
            .topo
            .site(&self.topo.node(node).expect("node").site)
            .expect("site")
            .router_ip;
        cmd::ip_batch(
            &ns,
            &[
                "link set eth0 up".into(),
                format!("route replace default via {router}"),
            ],
        )
        .map_err(io)?;
        self.start_agent(node)
    }

    /// Waits for the control plane and the present nodes' agents to converge, then reads the
    /// pod CIDRs and points the customer routers at them.
    pub fn converge(&mut self) -> Result<Duration, LabError> {
        let netns_of: BTreeMap<String, String> = self
            .present
            .iter()
            .filter_map(|n| Some((n.clone(), self.node_netns(n)?)))
            .collect();
        let present = self.present.clone();
        let took = self
            .cp()
            .wait_converged(&present, &netns_of, CONVERGE_TIMEOUT)?;
        self.pod_cidrs = self.cp().pod_cidrs()?;
        self.sync_customer_routes()?;
        Ok(took)
    }

    /// Routers of sites on a private interconnect route every local node's pod CIDRs to that
    /// node, as the customer network's BGP (or cloud route table) does once nodes announce
    /// them; the interconnect then carries the site's pools (built with the topology).
    fn sync_customer_routes(&self) -> Result<(), LabError> {
        for site in &self.topo.sites {
            let on_interconnect = self
                .topo
                .private_links
                .iter()
                .any(|l| l.a == site.name || l.b == site.name);
            if !on_interconnect {
                continue;
            }
            let lines: Vec<String> = self
                .topo
                .nodes
                .iter()
                .filter(|n| n.site == site.name)
                .flat_map(|n| {
                    self.pod_cidrs
                        .get(&n.name)
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |c| format!("route replace {c} via {}", n.internal_ip))
                })
                .collect();
            cmd::ip_batch(&self.reg.netns_name(&site.netns), &lines).map_err(io)?;
        }
        Ok(())
    }

    /// A node joins: its Node object is created, its agent starts, everything converges and
    /// its pod is attached.
    pub fn join_node(&mut self, node: &str) -> Result<(), LabError> {
        if self.topo.node(node).is_none() || self.present.iter().any(|n| n == node) {
            return Err(LabError::Io(format!(
                "{node} cannot join: unknown or already present"
            )));
        }
        self.register_node(node)?;
        self.present.push(node.into());
        self.start_agent(node)?;
        self.converge()?;
        self.add_pod(node)
    }

    /// A node leaves: drained (its pod removed from the checks), its Node object deleted,
    /// its machine gone; the others converge without it.
    pub fn leave_node(&mut self, node: &str) -> Result<(), LabError> {
        if !self.present.iter().any(|n| n == node) {
            return Err(LabError::Io(format!("{node} cannot leave: not present")));
        }
        self.pods.remove(node);
        self.kill_machine(node)?;
        self.cp().delete_node(node)?;
        self.present.retain(|n| n != node);
        self.converge()?;
        Ok(())
    }

    /// Creates the node's test pod and attaches it with the conflist its agent wrote.
    pub fn add_pod(&mut self, node: &str) -> Result<(), LabError> {
        let dir = self.node_dir(node);
        let conf = pods::load_conflist(
            &dir.join("net.d")
                .join(unbounded_net::node::cni::CONFLIST_FILE),
            &dir.join("ipam"),
        )
        .map_err(|source| LabError::Pod {
            node: node.into(),
            source,
        })?;
        let pod_ns = self.reg.netns_name(&format!("p-{node}"));
        self.reg.add_netns(&pod_ns)?;
        cmd::run("ip", &["netns", "add", &pod_ns]).map_err(io)?;
        let node_ns = self.node_netns(node).expect("topology node");
        let pod = pods::attach(&conf, node, &node_ns, &format!("pod-{node}"), &pod_ns).map_err(
            |source| LabError::Pod {
                node: node.into(),
                source,
            },
        )?;
        self.echo
            .push(EchoServer::start(&pod_ns, pod.ip).map_err(io)?);
        self.pods.insert(node.into(), pod);
        Ok(())
    }
}
