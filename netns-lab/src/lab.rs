//! One lab: a scenario's topology built, its control plane and agents running, its pods
//! attached. Dropping a [`Lab`] tears it down unless it was detached.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use unbounded_net::api::Site;
use unbounded_scenario::KubeObject;
use unbounded_scenario::{Kernel, Scenario};

use crate::control::{self, ControlPlane};
use crate::pods::{self, Pod};
use crate::progress::Progress;
use crate::registry::{self, Registry};
use crate::report::RunReport;
use crate::signals;
use crate::topology::{LabTopology, build, from_scenario};
use crate::traffic::EchoServer;

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
    ControlPlane(#[from] control::ControlError),
    #[error(transparent)]
    KubeBinaries(#[from] control::apiserver::binaries::BinariesError),
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
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Run even though the kernel cannot delay packets (no netem); reported in the notes.
    pub without_delay: bool,
    pub control_plane: control::Mode,
    /// This process is the `--kernel vm` guest: the kernel has what `kernel: vm` needs.
    pub in_vm: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            without_delay: false,
            control_plane: control::Mode::Embedded,
            in_vm: false,
        }
    }
}

/// A running lab.
pub struct Lab {
    /// Things the result table must mention (e.g. delay not emulated).
    pub notes: Vec<String>,
    pub reg: Registry,
    pub scenario: Scenario,
    pub topo: LabTopology,
    pub bring_up: Duration,
    /// Nodes in the cluster now (scenario nodes with `present: true`, plus joined ones).
    pub present: Vec<String>,
    /// The controller and the node agents (dropped before the namespaces go).
    pub(crate) cp: Option<ControlPlane>,
    /// Pod CIDRs per node as the controller allocated them (read after each convergence).
    pub pod_cidrs: BTreeMap<String, Vec<ipnet::IpNet>>,
    /// Test pod of each node.
    pub pods: BTreeMap<String, Pod>,
    pub(crate) echo: Vec<EchoServer>,
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
pub fn load_scenario(path: &Path, in_vm: bool) -> Result<Scenario, LabError> {
    let s = Scenario::load(path).map_err(|e| LabError::Scenario(e.to_string()))?;
    if s.kernel == Kernel::Vm && !in_vm {
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
        let scenario = load_scenario(path, opts.in_vm)?;
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
        if opts.control_plane == control::Mode::Kube {
            // Before any namespace exists: the first kube-mode run builds the Go control plane
            // (≈ 10 min, once), which is no part of the lab's bring-up time.
            control::apiserver::binaries::ensure_kube_mode()?;
        }
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
            cp: None,
            pod_cidrs: BTreeMap::new(),
            pods: BTreeMap::new(),
            echo: Vec::new(),
            detached: false,
        };
        // From here, dropping `lab` on an error path tears down what was built.
        let mut progress = Progress::new(false);
        build::build(&lab.reg, &lab.topo, &mut progress)?;
        let mode = opts.control_plane;
        progress.step(match mode {
            control::Mode::Embedded => {
                "control plane (embedded): in-memory API store, 2 controller replicas"
            }
            control::Mode::Kube => {
                "control plane (kube): etcd + kube-apiserver, CRDs, 2 unbounded-net-controller processes"
            }
        });
        lab.cp = Some(ControlPlane::start(
            mode,
            &lab.reg,
            &lab.scenario,
            lab.underlay_mtu(),
        )?);
        progress.step("nodes registered, node agents started");
        for n in lab.present.clone() {
            lab.register_node(&n)?;
            lab.start_agent(&n)?;
        }
        progress.step("waiting for the controller and every agent to converge");
        lab.converge()?;
        progress.step("test pods (CNI ADD with the agents' conflists)");
        for n in lab.present.clone() {
            lab.add_pod(&n)?;
        }
        lab.bring_up = start.elapsed();
        progress.step("lab ready");
        Ok(lab)
    }

    /// The underlay MTU the planner assumes: the smallest of the scenario's sites.
    fn underlay_mtu(&self) -> u32 {
        self.scenario
            .topology
            .sites
            .iter()
            .map(|s| s.mtu)
            .min()
            .unwrap_or(1500)
    }

    pub(crate) fn cp(&mut self) -> &mut ControlPlane {
        self.cp
            .as_mut()
            .expect("the control plane runs while the lab is up")
    }

    pub(crate) fn node_dir(&self, node: &str) -> std::path::PathBuf {
        registry::lab_dir(&self.reg.lab()).join("nodes").join(node)
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
                self.pod_cidrs.get(&n.name).cloned().unwrap_or_default()
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
        // Kube mode's processes (API server, controllers, agents) must outlive this handle:
        // their guards would kill them. `down` removes them by the PIDs in the registry.
        std::mem::forget(self.cp.take());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        // Agents run inside the namespaces: stop them (and the controllers, the API server)
        // before the namespaces go.
        self.echo.clear();
        drop(self.cp.take());
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
        kernel: if opts.in_vm { "vm" } else { "host" }.into(),
        control_plane: opts.control_plane.name().into(),
        bring_up_ms: lab.bring_up.as_millis(),
        results,
    };
    if keep {
        lab.detach();
    }
    Ok(report)
}
