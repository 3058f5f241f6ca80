//! unbounded-net-controller: leader-elected control plane (site labels, pod CIDRs,
//! SiteNodeSlices, gateway pool and peering status, Events, metrics).
//!
//! Settings come from flags, each with an environment fallback (the ConfigMap in deploy/).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use unbounded_net::cluster::KubeCluster;
use unbounded_net::controller::{Controller, ControllerSettings, SystemClock, http};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

#[derive(Parser, Debug)]
#[command(name = "unbounded-net-controller", version)]
struct Args {
    /// kubeconfig file; in-cluster service account (or $KUBECONFIG) when absent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Identity in the Lease [env POD_NAME, default hostname-pid].
    #[arg(long)]
    identity: Option<String>,
    /// Namespace of the Lease [env POD_NAMESPACE].
    #[arg(long, default_value_t = env_or("POD_NAMESPACE", "unbounded-net"))]
    lease_namespace: String,
    #[arg(long, default_value_t = env_or("UNBOUNDED_LEASE_NAME", "unbounded-net-controller"))]
    lease_name: String,
    #[arg(long, default_value_t = env_or("UNBOUNDED_LEASE_DURATION_SECONDS", "15").parse().unwrap_or(15))]
    lease_duration_seconds: u64,
    #[arg(long, default_value_t = env_or("UNBOUNDED_LEASE_RENEW_SECONDS", "5").parse().unwrap_or(5))]
    renew_seconds: u64,
    /// Namespace receiving Events.
    #[arg(long, default_value = "default")]
    event_namespace: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let settings = ControllerSettings {
        identity: identity.clone(),
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        lease_duration: Duration::from_secs(args.lease_duration_seconds.max(1)),
        renew_interval: Duration::from_secs(args.renew_seconds.max(1)),
        event_namespace: args.event_namespace,
        ..ControllerSettings::default()
    };
    info!(%identity, ?settings, "starting");
    let controller = Controller::new(
        KubeCluster::new(client, "unbounded-net-controller"),
        settings,
        Arc::new(SystemClock),
    );
    let (bound, _server) = http::serve(
        args.listen,
        controller.metrics.clone(),
        controller.store.clone(),
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    info!(%bound, "health and metrics endpoint up");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        info!("shutting down: releasing the Lease");
        let _ = stop_tx.send(true);
    });
    controller.run(stop_rx).await;
    Ok(())
}
