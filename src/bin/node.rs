//! unbounded-net-node: the per-node data plane agent (eBPF dataplane by default, netlink on
//! request).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tracing::{error, info};
use unbounded_net::cluster::KubeCluster;
use unbounded_net::core::plan_index::PlanSettings;
use unbounded_net::node::ebpf::{DataplaneChoice, EbpfConfig};
use unbounded_net::node::shell::{self, AgentConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DataplaneKind {
    /// Per-peer tunnel devices and kernel (multipath) routes.
    Netlink,
    /// TC eBPF program on the unbounded0 anchor with LPM maps and shared flow-based tunnel
    /// devices (refused, with the reason, on kernels that cannot run it).
    Ebpf,
}

#[derive(Parser, Debug)]
#[command(name = "unbounded-net-node", about = "unbounded-net node agent")]
struct Args {
    /// Name of the Node this agent runs on ($NODE_NAME when absent).
    #[arg(long)]
    node_name: Option<String>,
    /// Host directory for the WireGuard private key (mode 0600) and agent state.
    #[arg(long, default_value = "/var/lib/unbounded-net")]
    state_dir: PathBuf,
    /// Data plane: `ebpf` (default) or `netlink` (the ConfigMap sets it as $UNBOUNDED_DATAPLANE).
    #[arg(long, value_enum, env = "UNBOUNDED_DATAPLANE", default_value = "ebpf")]
    dataplane: DataplaneKind,
    /// BPF filesystem directory for the eBPF dataplane's pinned maps and program (a bpffs is
    /// mounted at its parent when none is there).
    #[arg(long, default_value = unbounded_net::node::ebpf::DEFAULT_PIN_DIR)]
    bpf_pin_dir: PathBuf,
    /// Remove everything the agent created (tunnels, routes, WireGuard, bridge, masquerade,
    /// CNI config, key, and the eBPF filter, pins, anchor and shared tunnel devices) and exit.
    #[arg(long)]
    cleanup: bool,
    /// kubeconfig file; in-cluster service account (or $KUBECONFIG) when absent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Overwrite a CNI config at our path that another CNI wrote.
    #[arg(long)]
    force_cni: bool,
    #[arg(long, default_value = "unbounded-wg0")]
    wireguard_device: String,
    /// Use userspace WireGuard (boringtun) even if the kernel has WireGuard.
    #[arg(long)]
    userspace_wireguard: bool,
    /// Seconds between reads of the cluster.
    #[arg(long, default_value_t = 10)]
    resync_seconds: u64,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9102")]
    metrics_addr: SocketAddr,
    /// This node's underlay MTU. Absent: detected from the interface of the default route
    /// (and published on the Node for peers to compute path MTUs from).
    #[arg(long, env = "UNBOUNDED_UNDERLAY_MTU")]
    underlay_mtu: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // JSON logs on stderr (stdout stays free of anything but logs' absence).
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let node_name = args
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .context("--node-name (or $NODE_NAME) is required")?;
    let dataplane = match args.dataplane {
        DataplaneKind::Netlink => DataplaneChoice::Netlink,
        DataplaneKind::Ebpf => DataplaneChoice::Ebpf(EbpfConfig {
            pin_dir: args.bpf_pin_dir.clone(),
            wireguard_device: args.wireguard_device.clone(),
        }),
    };
    let cfg = AgentConfig {
        node_name: node_name.clone(),
        state_dir: args.state_dir.clone(),
        cni_conf_dir: args.cni_conf_dir.clone(),
        force_cni: args.force_cni,
        wireguard_device: args.wireguard_device.clone(),
        force_userspace_wireguard: args.userspace_wireguard,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        metrics_addr: args.metrics_addr,
        plan_settings: PlanSettings::default(),
        underlay_mtu: args.underlay_mtu,
    };
    if args.cleanup {
        let mut errors = shell::cleanup(&cfg).await;
        // The eBPF pieces too, whichever dataplane ran last (absent ones are fine).
        errors.extend(unbounded_net::node::ebpf::cleanup(&args.bpf_pin_dir).await);
        for e in &errors {
            error!(error = %e, "cleanup step failed");
        }
        anyhow::ensure!(errors.is_empty(), "{} cleanup step(s) failed", errors.len());
        info!("cleanup complete");
        return Ok(());
    }
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    info!(node = %node_name, "starting");
    // SIGTERM (pod deletion, rolling update) ends the agent at once; the data plane stays as
    // it is for the next agent to adopt. As PID 1 in a container nothing else would stop it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = shell::run_with(KubeCluster::new(client, "unbounded-net-node"), cfg, dataplane) => r?,
        _ = term.recv() => info!("SIGTERM: stopping; the data plane stays in place"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: stopping; the data plane stays in place"),
    }
    Ok(())
}
