//! One lab: a scenario's topology built, its control plane and agents running, its pods
//! attached. Dropping a [`Lab`] tears it down unless it was detached.

use std::path::Path;
use std::time::Instant;

use unbounded_net::api::Site;
use unbounded_scenario::KubeObject;
use unbounded_scenario::{Kernel, Scenario};

use crate::progress::Progress;
use crate::registry::{self, Registry};
use crate::report::RunReport;
use crate::signals;
use crate::topology::{LabTopology, build, from_scenario};

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
            scenario,
            topo,
            bring_up: Default::default(),
            detached: false,
        };
        // From here, dropping `lab` on an error path tears down what was built.
        let mut progress = Progress::new(false);
        build::build(&lab.reg, &lab.topo, &mut progress)?;
        lab.bring_up = start.elapsed();
        progress.step("lab ready");
        Ok(lab)
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
    let candidates = [
        format!("n-{target}"),
        format!("p-{target}"),
        target.to_string(),
    ];
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
    let lab = Lab::up(path, name, opts)?;
    let report = RunReport {
        notes: lab.notes.clone(),
        scenario: lab.scenario.name.clone(),
        lab: name.into(),
        kernel: "host".into(),
        control_plane: "embedded".into(),
        bring_up_ms: lab.bring_up.as_millis(),
        results: crate::checks::run_all(&lab),
    };
    if keep {
        lab.detach();
    }
    Ok(report)
}
