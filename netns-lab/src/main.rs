//! `netns-lab`: multi-site unbounded-net topologies from real network namespaces.
//!
//!   netns-lab doctor
//!   netns-lab up scenarios/expressroute.yaml      # build and leave running
//!   netns-lab shell NODE                          # a shell inside a node (or pod, router)
//!   netns-lab down
//!   netns-lab scenario scenarios/expressroute.yaml [--json out.json]

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use netns_lab::{doctor, lab, registry, signals};

#[derive(Parser)]
#[command(
    name = "netns-lab",
    about = "Multi-site unbounded-net labs from network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ControlPlane {
    /// The production controller and agent shells over an in-memory API store, all inside
    /// the lab process (agents on threads in their node namespaces).
    Embedded,
    /// A real kube-apiserver + etcd, `unbounded-net-controller` processes and one
    /// `unbounded-net-node` process per node namespace, over a management network.
    Kube,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum KernelMode {
    /// This machine's kernel.
    Host,
    /// Debian's cloud kernel in a qemu (TCG) VM.
    Vm,
}

#[derive(clap::Args)]
struct RunOpts {
    /// The scenario file.
    scenario: PathBuf,
    /// Lab name (namespace prefix `nl-NAME-`); default: the scenario's file stem.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_enum, default_value = "embedded")]
    control_plane: ControlPlane,
    /// Default: the kernel the scenario declares.
    #[arg(long, value_enum)]
    kernel: Option<KernelMode>,
    /// Run although this kernel cannot delay packets (no netem); the results say so.
    #[arg(long)]
    without_delay: bool,
    /// Internal: this process is the `--kernel vm` guest (set by the VM's /init).
    #[arg(long, hide = true)]
    vm_guest: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// What this kernel and machine can do, and how to install what is missing.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Build a scenario's lab and leave it running (explore with `shell`, remove with `down`).
    Up(RunOpts),
    /// Remove a lab: every namespace, link, process and file it created.
    Down {
        /// Lab name; default: every lab recorded on this machine.
        #[arg(long)]
        name: Option<String>,
    },
    /// A shell (or COMMAND) inside a node, pod (`pod-NODE`), site router (`r-SITE`) or `inet`.
    Shell {
        target: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Classify every packet of a pcap file as the encapsulation checks do (debugging aid).
    Classify { pcap: PathBuf },
    /// Build a scenario's lab, run its timeline and checks, print the results, tear down.
    Scenario {
        #[command(flatten)]
        opts: RunOpts,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Leave the lab running afterwards.
        #[arg(long)]
        keep: bool,
    },
}

fn check_modes(opts: &RunOpts) -> anyhow::Result<()> {
    if opts.control_plane == ControlPlane::Kube && kernel_mode(opts) == KernelMode::Vm {
        bail!(
            "--control-plane kube does not work with --kernel vm (the API server binaries are not in the VM image): use the default --control-plane embedded"
        );
    }
    Ok(())
}

/// The kernel a run uses: `--kernel`, else the one the scenario declares. Inside the VM
/// guest it is the guest's own (host mode on the cloud kernel).
fn kernel_mode(opts: &RunOpts) -> KernelMode {
    if opts.vm_guest {
        return KernelMode::Host;
    }
    opts.kernel.unwrap_or_else(|| {
        match unbounded_scenario::Scenario::load(&opts.scenario).map(|s| s.kernel) {
            Ok(unbounded_scenario::Kernel::Vm) => KernelMode::Vm,
            // A scenario that does not load fails with its own message in the host path.
            _ => KernelMode::Host,
        }
    })
}

/// `scenario --kernel vm`: the same run inside a qemu VM with Debian's cloud kernel.
fn scenario_in_vm(opts: &RunOpts, json: Option<PathBuf>, keep: bool) -> anyhow::Result<()> {
    if keep {
        bail!("--keep does not work with --kernel vm: the VM and its lab end with the run");
    }
    let run = netns_lab::vm::VmRun {
        scenario: opts.scenario.clone(),
        name: lab_name(opts),
        without_delay: opts.without_delay,
    };
    let exe = std::env::current_exe().context("locating this netns-lab binary")?;
    let out = netns_lab::vm::run_scenario(&run, &exe)?;
    eprintln!(
        "netns-lab vm: boot {:.1} s, scenario {:.1} s (host wall time under TCG emulation, not data-plane figures)",
        out.boot.as_secs_f64(),
        out.run.as_secs_f64()
    );
    if let (Some(path), Some(text)) = (&json, &out.json) {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if out.exit_code != 0 {
        bail!(
            "the scenario failed inside the VM (exit {}; its table is above)",
            out.exit_code
        );
    }
    Ok(())
}

fn lab_name(opts: &RunOpts) -> String {
    let raw = opts.name.clone().unwrap_or_else(|| {
        opts.scenario
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "lab".into())
    });
    registry::sanitize_lab_name(&raw)
}

fn lab_options(opts: &RunOpts) -> lab::LabOptions {
    lab::LabOptions {
        without_delay: opts.without_delay,
        in_vm: opts.vm_guest,
        control_plane: match opts.control_plane {
            ControlPlane::Embedded => netns_lab::control::Mode::Embedded,
            ControlPlane::Kube => netns_lab::control::Mode::Kube,
        },
    }
}

fn main() -> anyhow::Result<()> {
    signals::block();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,unbounded_net::node=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Doctor { json } => {
            let caps = doctor::probe_all();
            if json {
                println!("{}", serde_json::to_string_pretty(&caps)?);
            } else {
                doctor::print(&caps);
            }
            Ok(())
        }
        Cmd::Up(opts) => {
            check_modes(&opts)?;
            if kernel_mode(&opts) == KernelMode::Vm {
                bail!(
                    "`up` does not work with --kernel vm (the VM lives for one run): use `netns-lab scenario FILE --kernel vm`"
                );
            }
            let name = lab_name(&opts);
            let lab = lab::Lab::up(&opts.scenario, &name, &lab_options(&opts))
                .context("bringing the lab up")?;
            lab.print_summary();
            eprintln!(
                "lab {name} is up: `netns-lab shell NODE --name {name}` to explore; Ctrl-C here or `netns-lab down --name {name}` removes it"
            );
            // The control plane and agents live in this process: stay in the foreground until
            // a signal, whose handler tears the lab down.
            let _lab = lab;
            loop {
                std::thread::park();
            }
        }
        Cmd::Down { name } => {
            let labs = match name {
                Some(n) => vec![registry::sanitize_lab_name(&n)],
                None => registry::recorded_labs(),
            };
            let mut failed = false;
            for l in labs {
                let reg = registry::Registry::load(&l)?;
                reg.stop_owner(std::time::Duration::from_secs(20));
                let errors = reg.teardown();
                for e in &errors {
                    eprintln!("down {l}: {e}");
                }
                failed |= !errors.is_empty();
                eprintln!("lab {l} removed");
            }
            if failed {
                bail!("some lab resources could not be removed (see above)");
            }
            Ok(())
        }
        Cmd::Classify { pcap } => {
            for w in netns_lab::capture::read_pcap(&pcap)? {
                println!("{w:?}");
            }
            Ok(())
        }
        Cmd::Shell {
            target,
            name,
            command,
        } => lab::shell(name.as_deref(), &target, &command),
        Cmd::Scenario { opts, json, keep } => {
            check_modes(&opts)?;
            if kernel_mode(&opts) == KernelMode::Vm {
                return scenario_in_vm(&opts, json, keep);
            }
            let name = lab_name(&opts);
            let report = lab::run_scenario(&opts.scenario, &name, &lab_options(&opts), keep)?;
            report.print_table();
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if !report.passed() {
                bail!(
                    "{} of {} checks failed",
                    report.failed_count(),
                    report.results.len()
                );
            }
            Ok(())
        }
    }
}
