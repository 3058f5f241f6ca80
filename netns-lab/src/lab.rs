//! One lab: a scenario's topology built, its control plane and agents running, its pods
//! attached. Dropping a [`Lab`] tears it down unless it was detached.

use std::path::Path;
use std::time::Instant;

use unbounded_net::api::Site;
use unbounded_scenario::KubeObject;
use unbounded_scenario::{Kernel, Scenario};

use std::collections::BTreeMap;
use std::time::Duration;

use crate::agent_host::{AgentHandle, AgentSpec};
use crate::embedded::{self, ClusterPlan};
use crate::pods::{self, Pod};
use crate::progress::Progress;
use crate::registry::{self, Registry};
use crate::report::RunReport;
use crate::signals;
use crate::topology::{LabTopology, build, from_scenario};
use crate::traffic::EchoServer;
use crate::wireguard;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Scenario(String),
    #[error(
        "scenario {scenario} declares `kernel: vm` (it needs {needs}, which this kernel lacks): run it with `--kernel vm`"
    )]
    NeedsVm { scenario: String, needs: String },
    #[error(transparent)]
    Topology(#[from] from_scenario::TopologyError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error("building the topology: {0}")]
    Build(#[from] build::BuildError),
    #[error(
        "link {link} asks for {what}, but this kernel has no netem qdisc (sch_netem): run with `--kernel vm`, or pass `--without-delay` to run without the delay (the result table says so)"
    )]
    NeedsNetem { link: String, what: String },
    #[error("control plane: {0}")]
    ControlPlane(#[from] embedded::ControlPlaneError),
    #[error("WireGuard: {0}")]
    WireGuard(#[from] wireguard::WireGuardError),
    #[error("agent on {node}: {detail}")]
    Agent { node: String, detail: String },
    #[error("pod on {node}: {source}")]
    Pod {
        node: String,
        source: pods::PodError,
    },
    #[error("{0}")]
    Io(String),
    #[error("no lab target {target:?} in lab {lab}: use a node name, pod-NODE, r-SITE or inet")]
    UnknownTarget { lab: String, target: String },
}

/// How to run a lab.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Run even though the kernel cannot delay packets (no netem); reported in the notes.
    pub without_delay: bool,
}

/// A running lab.
pub struct Lab {
    /// Things the result table must mention (e.g. delay not emulated).
    pub notes: Vec<String>,
    pub reg: Registry,
    pub scenario: Scenario,
    pub topo: LabTopology,
    pub bring_up: std::time::Duration,
    /// Nodes in the cluster now (scenario nodes with `present: true`, plus joined ones).
    pub present: Vec<String>,
    /// WireGuard public keys the agents published.
    pub keys: BTreeMap<String, String>,
    pub plan: Option<ClusterPlan>,
    pub agents: BTreeMap<String, AgentHandle>,
    /// Test pod of each node.
    pub pods: BTreeMap<String, Pod>,
    echo: Vec<EchoServer>,
    /// Pod CIDRs per node, shared with the agents' WireGuard devices.
    pod_cidrs: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<ipnet::IpNet>>>>,
    detached: bool,
}

/// The Site objects a scenario applies.
pub fn site_objects(s: &Scenario) -> Vec<Site> {
    s.objects
        .iter()
        .filter_map(|m| match &m.object {
            KubeObject::Site(site) => Some(site.clone()),
            _ => None,
        })
        .collect()
}

/// Loads a scenario and refuses one this kernel mode cannot run.
pub fn load_scenario(path: &Path) -> Result<Scenario, LabError> {
    let s = Scenario::load(path).map_err(|e| LabError::Scenario(e.to_string()))?;
    if s.kernel == Kernel::Vm {
        return Err(LabError::NeedsVm {
            scenario: s.name.clone(),
            needs: "kernel GENEVE/IPIP/WireGuard/dummy devices".into(),
        });
    }
    Ok(s)
}

impl Lab {
    /// Builds the lab. On any error everything created so far is removed.
    pub fn up(path: &Path, name: &str, opts: &LabOptions) -> Result<Lab, LabError> {
        let scenario = load_scenario(path)?;
        let mut notes = Vec::new();
        for link in &scenario.topology.links {
            if link.latency.as_std().is_zero() || build::netem_available() {
                continue;
            }
            if !opts.without_delay {
                return Err(LabError::NeedsNetem {
                    link: link.name.clone(),
                    what: format!("{}ms of delay", link.latency.as_millis()),
                });
            }
            notes.push(format!(
                "link {}: {}ms delay NOT emulated (kernel has no netem; --without-delay)",
                link.name,
                link.latency.as_millis()
            ));
        }
        let topo = from_scenario::lab_topology(&scenario.topology, &site_objects(&scenario))?;
        let reg = Registry::create(name, Some(path.to_path_buf()))?;
        signals::spawn_teardown_on_signal(reg.clone());
        let start = Instant::now();
        let mut lab = Lab {
            notes,
            reg,
            present: scenario
                .topology
                .nodes
                .iter()
                .filter(|n| n.present)
                .map(|n| n.name.clone())
                .collect(),
            scenario,
            topo,
            bring_up: Default::default(),
            keys: BTreeMap::new(),
            plan: None,
            agents: BTreeMap::new(),
            pods: BTreeMap::new(),
            echo: Vec::new(),
            pod_cidrs: Default::default(),
            detached: false,
        };
        // From here, dropping `lab` on an error path tears down what was built.
        let mut progress = Progress::new(false);
        build::build(&lab.reg, &lab.topo, &mut progress)?;
        progress.step("node keys (wg genkey, on each node)");
        for n in lab.present.clone() {
            let (_, public) = wireguard::generate_key(&lab.keys_dir(), &n)?;
            lab.keys.insert(n, public);
        }
        progress.step("control plane (embedded): site labels, pod CIDRs, node plans");
        lab.replan()?;
        progress.step("node agents");
        for n in lab.present.clone() {
            lab.start_agent(&n)?;
        }
        lab.wait_converged(Duration::from_secs(30))?;
        progress.step("test pods (CNI ADD with the agents' conflists)");
        for n in lab.present.clone() {
            lab.add_pod(&n)?;
        }
        lab.bring_up = start.elapsed();
        progress.step("lab ready");
        Ok(lab)
    }

    fn keys_dir(&self) -> std::path::PathBuf {
        registry::lab_dir(&self.reg.lab()).join("keys")
    }

    fn node_dir(&self, node: &str) -> std::path::PathBuf {
        registry::lab_dir(&self.reg.lab()).join("nodes").join(node)
    }

    /// Re-runs the embedded control plane over the present nodes and hands every running
    /// agent its new plan.
    pub fn replan(&mut self) -> Result<(), LabError> {
        let existing: BTreeMap<String, Vec<ipnet::IpNet>> = self
            .plan
            .as_ref()
            .map(|p| {
                p.snapshot
                    .nodes
                    .iter()
                    .map(|(n, f)| (n.clone(), f.pod_cidrs.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let plan = embedded::plan_cluster(&self.scenario, &self.present, &self.keys, &existing)?;
        for p in &plan.problems {
            tracing::warn!(problem = %p, "planner");
        }
        *self.pod_cidrs.lock().expect("pod CIDR map") = plan
            .snapshot
            .nodes
            .iter()
            .map(|(n, f)| (n.clone(), f.pod_cidrs.clone()))
            .collect();
        for (node, agent) in &self.agents {
            if let Some(dp) = plan.dataplanes.get(node) {
                agent.set_plan(dp.clone());
            }
        }
        self.plan = Some(plan);
        self.sync_customer_routes()
    }

    /// Routers of sites on a private interconnect route every local node's pod CIDRs to that
    /// node, as the customer network's BGP (or cloud route table) does once nodes announce
    /// them; the interconnect then carries the site's pools (built with the topology).
    fn sync_customer_routes(&self) -> Result<(), LabError> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
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
                    plan.pod_cidrs(&n.name)
                        .into_iter()
                        .map(move |c| format!("route replace {c} via {}", n.internal_ip))
                })
                .collect();
            crate::cmd::ip_batch(&self.reg.netns_name(&site.netns), &lines)
                .map_err(|e| LabError::Io(e.to_string()))?;
        }
        Ok(())
    }

    /// A node joins: its agent makes a key, the control plane plans it (and re-plans
    /// everyone), its agent starts and its pod is attached.
    pub fn join_node(&mut self, node: &str) -> Result<(), LabError> {
        if self.topo.node(node).is_none() || self.present.iter().any(|n| n == node) {
            return Err(LabError::Io(format!(
                "{node} cannot join: unknown or already present"
            )));
        }
        let (_, public) = wireguard::generate_key(&self.keys_dir(), node)?;
        self.keys.insert(node.into(), public);
        self.present.push(node.into());
        self.replan()?;
        self.start_agent(node)?;
        self.wait_converged(Duration::from_secs(30))?;
        self.add_pod(node)
    }

    /// A machine-wide unique WireGuard device name (boringtun's UAPI sockets share one
    /// directory across namespaces).
    fn wg_dev(&self, node: &str) -> String {
        let lab = self.reg.lab();
        let h = lab
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            & 0xffff;
        let idx = self
            .topo
            .nodes
            .iter()
            .position(|n| n.name == node)
            .unwrap_or(0);
        format!("nlw{h:04x}{idx}")
    }

    pub fn start_agent(&mut self, node: &str) -> Result<(), LabError> {
        let plan = self
            .plan
            .as_ref()
            .and_then(|p| p.dataplanes.get(node))
            .cloned()
            .ok_or_else(|| LabError::Agent {
                node: node.into(),
                detail: "the control plane has no plan for it".into(),
            })?;
        let dir = self.node_dir(node);
        std::fs::create_dir_all(dir.join("net.d")).map_err(|e| LabError::Io(e.to_string()))?;
        let dev = self.wg_dev(node);
        self.reg
            .add_path(&std::path::Path::new(wireguard::UAPI_DIR).join(format!("{dev}.sock")))?;
        let spec = AgentSpec {
            node: node.into(),
            netns: self.node_netns(node).expect("topology node"),
            cni_dir: dir.join("net.d"),
            wg_dev: dev,
            wg_key: self.keys_dir().join(format!("{node}.key")),
            wg_log: dir.join("boringtun.log"),
            pod_cidrs: self.pod_cidrs.clone(),
        };
        self.agents
            .insert(node.into(), AgentHandle::start(spec, plan));
        Ok(())
    }

    /// Waits until every agent completed a reconcile pass.
    pub fn wait_converged(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pending = Vec::new();
            let mut failed = Vec::new();
            for (node, a) in &self.agents {
                if a.finished() {
                    failed.push(node.clone());
                } else if *a.passes.borrow() == 0 {
                    pending.push(node.clone());
                }
            }
            if let Some(node) = failed.into_iter().next() {
                let a = self.agents.remove(&node).expect("listed");
                let detail = a.stop().err().unwrap_or_else(|| "stopped".into());
                return Err(LabError::Agent { node, detail });
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::Agent {
                    node: pending.join(","),
                    detail: format!("no reconcile pass within {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
        crate::cmd::run("ip", &["netns", "add", &pod_ns])
            .map_err(|e| LabError::Io(e.to_string()))?;
        let node_ns = self.node_netns(node).expect("topology node");
        let pod = pods::attach(&conf, node, &node_ns, &format!("pod-{node}"), &pod_ns).map_err(
            |source| LabError::Pod {
                node: node.into(),
                source,
            },
        )?;
        self.echo
            .push(EchoServer::start(&pod_ns, pod.ip).map_err(|e| LabError::Io(e.to_string()))?);
        self.pods.insert(node.into(), pod);
        Ok(())
    }

    /// Namespace of a node.
    pub fn node_netns(&self, node: &str) -> Option<String> {
        self.topo.node(node).map(|n| self.reg.netns_name(&n.netns))
    }

    pub fn print_summary(&self) {
        for s in &self.topo.sites {
            eprintln!(
                "site {:<12} router {:<15} underlay {:<18} mtu {} wan {}",
                s.name,
                s.router_ip,
                s.underlay.to_string(),
                s.mtu,
                s.wan_ip
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "-".into())
            );
        }
        for n in &self.topo.nodes {
            let pod = self
                .pods
                .get(&n.name)
                .map(|p| p.ip.to_string())
                .unwrap_or_else(|| "-".into());
            eprintln!(
                "pod  {:<14} ip {pod:<15} pod CIDRs {:?}",
                n.name,
                self.plan
                    .as_ref()
                    .map(|p| p.pod_cidrs(&n.name))
                    .unwrap_or_default()
            );
            eprintln!(
                "node {:<14} site {:<12} {:<15} ext {:<15} ns {}",
                n.name,
                n.site,
                n.internal_ip,
                n.external_ip
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
                self.reg.netns_name(&n.netns)
            );
        }
    }

    /// Leaves everything running (for `up`).
    pub fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        // Agents run inside the namespaces: stop them before the namespaces go.
        self.echo.clear();
        for (node, a) in std::mem::take(&mut self.agents) {
            if let Err(e) = a.stop() {
                eprintln!("netns-lab: agent {node}: {e}");
            }
        }
        let errors = self.reg.teardown();
        for e in errors {
            eprintln!("netns-lab: teardown: {e}");
        }
    }
}

/// `shell TARGET [COMMAND…]` inside a lab's namespace.
pub fn shell(lab: Option<&str>, target: &str, command: &[String]) -> anyhow::Result<()> {
    let labs = match lab {
        Some(l) => vec![registry::sanitize_lab_name(l)],
        None => registry::recorded_labs(),
    };
    let [lab] = labs.as_slice() else {
        anyhow::bail!(
            "{} labs are up ({}): pick one with --name",
            labs.len(),
            labs.join(", ")
        );
    };
    let mut candidates = vec![format!("n-{target}"), target.to_string()];
    if let Some(node) = target.strip_prefix("pod-") {
        candidates.insert(0, format!("p-{node}"));
    }
    let existing = registry::existing_namespaces(lab);
    let Some(ns) = candidates
        .iter()
        .map(|c| format!("{}{lab}-{c}", registry::NETNS_PREFIX))
        .find(|c| existing.contains(c))
    else {
        return Err(LabError::UnknownTarget {
            lab: lab.clone(),
            target: target.into(),
        }
        .into());
    };
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns]);
    if command.is_empty() {
        cmd.arg(&shell);
    } else {
        cmd.args(command);
    }
    signals::unblock_for_children(&mut cmd);
    let status = cmd.status()?;
    // Pass the command's own exit status through, as `ip netns exec` does.
    std::process::exit(status.code().unwrap_or(1));
}

/// `scenario`: build, run the checks, report, tear down (unless `keep`).
pub fn run_scenario(
    path: &Path,
    name: &str,
    opts: &LabOptions,
    keep: bool,
) -> anyhow::Result<RunReport> {
    let mut lab = Lab::up(path, name, opts)?;
    let results = crate::timeline::run(&mut lab);
    let report = RunReport {
        notes: lab.notes.clone(),
        scenario: lab.scenario.name.clone(),
        lab: name.into(),
        kernel: "host".into(),
        control_plane: "embedded".into(),
        bring_up_ms: lab.bring_up.as_millis(),
        results,
    };
    if keep {
        lab.detach();
    }
    Ok(report)
}
