//! Controller at scale against a real kube-apiserver + etcd: 2,000 Nodes join across 20
//! Sites; the agents publish their WireGuard keys. Reports time to full convergence (every
//! node labelled and allocated, every SiteNodeSlice listing every node with its key and pod
//! CIDR), API writes per node join (controller writes + the agent's annotation), and the
//! controller's peak RSS (the release binary as a child process).
//!
//!     cargo bench -p unbounded-net --bench controller        # NODES=2000 SITES=20 by default

#[path = "../tests/support/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use unbounded_net::api::{SITE_LABEL, Site, SiteNodeSlice};

use apiserver::{ControlPlane, free_port};

/// The controller binary, killed by PID on drop.
struct ControllerChild(Child);

impl Drop for ControllerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

/// A well-formed (all-zero-padding) WireGuard key per node index.
fn key(i: usize) -> String {
    use std::fmt::Write;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    let mut n = i + 1;
    for _ in 0..42 {
        s.push(alphabet[n % 64] as char);
        n /= 64;
    }
    let _ = write!(s, "A=");
    s
}

#[tokio::main]
async fn main() {
    let nodes_n = env_usize("NODES", 2000);
    let sites_n = env_usize("SITES", 20);
    let bin = env!("CARGO_BIN_EXE_unbounded-net-controller");
    let help = Command::new(bin)
        .arg("--help")
        .output()
        .expect("run controller --help");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--lease-duration-seconds"),
        "{bin} is not the kube-rs controller (a concurrent build replaced it?); rebuild and rerun"
    );

    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let _ = cp.kubectl(&["create", "namespace", "unbounded-net"]);
    let sites = Api::<Site>::all(client.clone());
    for s in 0..sites_n {
        let site: Site = serde_json::from_value(json!({
            "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "Site",
            "metadata": {"name": format!("site-{s:02}")},
            "spec": {
                "nodeCidrs": [format!("10.{s}.0.0/16")],
                "podCidrAssignments": [{"cidrBlocks": [format!("100.{}.0.0/16", 64 + s)]}]
            }
        }))
        .expect("site");
        sites
            .create(&PostParams::default(), &site)
            .await
            .expect("create site");
    }

    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--identity=bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start controller");
    let controller = ControllerChild(child);
    let pid = controller.0.id();
    // Wait until it leads and has run its first pass (Sites get status).
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(port, "unbounded_net_controller_reconcile_passes_total").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "controller never reconciled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes_before = metric(port, "unbounded_net_controller_api_writes_total").unwrap_or(0.0);

    let nodes = Api::<Node>::all(client.clone());
    let started = Instant::now();
    // Nodes join (kubelet creates them), and each agent publishes its key right after.
    let agent_writes = stream::iter(0..nodes_n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let (s, h) = (i % sites_n, i / sites_n);
                let name = format!("node-{i:05}");
                let ip = format!("10.{s}.{}.{}", h / 250, h % 250 + 1);
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
                }))
                .expect("node");
                nodes.create(&PostParams::default(), &node).await.expect("create node");
                let patch = json!({"metadata": {"annotations": {"net.unbounded-cloud.io/wg-pubkey": key(i)}}});
                nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .expect("agent annotation");
                1usize
            }
        })
        .buffer_unordered(16)
        .fold(0usize, |a, b| async move { a + b })
        .await;
    let created = started.elapsed();

    let slices = Api::<SiteNodeSlice>::all(client.clone());
    let mut peak_rss = 0;
    let converged = loop {
        peak_rss = peak_rss.max(peak_rss_kib(pid).unwrap_or(0));
        let node_list = nodes
            .list(&ListParams::default())
            .await
            .expect("list nodes");
        let nodes_done = node_list.items.iter().all(|n| {
            n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(SITE_LABEL))
                && n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidrs.as_ref())
                    .is_some_and(|c| !c.is_empty())
        });
        let slice_list = slices
            .list(&ListParams::default())
            .await
            .expect("list slices");
        let mut in_slices: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &slice_list.items {
            for n in &s.spec.nodes {
                if !n.pod_cidrs.is_empty() && !n.wire_guard_public_key.is_empty() {
                    *in_slices.entry(n.name.as_str()).or_default() += 1;
                }
            }
        }
        if nodes_done && node_list.items.len() == nodes_n && in_slices.len() == nodes_n {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "no convergence within 15 min"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Let trailing status writes land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    peak_rss = peak_rss.max(peak_rss_kib(pid).unwrap_or(0));
    let controller_writes =
        metric(port, "unbounded_net_controller_api_writes_total").unwrap_or(0.0) - writes_before;
    let conflicts = metric(port, "unbounded_net_controller_api_conflicts_total").unwrap_or(0.0);
    let passes = metric(port, "unbounded_net_controller_reconcile_passes_total").unwrap_or(0.0);
    let per_join = (controller_writes + agent_writes as f64) / nodes_n as f64;
    println!("controller benchmark: {nodes_n} nodes across {sites_n} sites");
    println!(
        "  nodes created + annotated by the test client in {:.1} s",
        created.as_secs_f64()
    );
    println!(
        "  full convergence (labels, podCIDRs, slices with keys) {:.1} s after the first node",
        converged.as_secs_f64()
    );
    println!(
        "  API writes per node join: {per_join:.2} ({controller_writes} controller + {agent_writes} agent annotations; {conflicts} conflicts retried; {passes} passes)"
    );
    println!("  controller peak RSS: {:.1} MiB", peak_rss as f64 / 1024.0);

    // One more node joining a quiet, converged cluster: the worst case per join (nothing
    // to batch with).
    let before = metric(port, "unbounded_net_controller_api_writes_total").unwrap_or(0.0);
    let name = "node-late";
    let late: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.200.1"}]}
    }))
    .expect("node");
    let t = Instant::now();
    nodes
        .create(&PostParams::default(), &late)
        .await
        .expect("late node");
    let patch = json!({"metadata": {"annotations": {"net.unbounded-cloud.io/wg-pubkey": key(nodes_n + 1)}}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("late annotation");
    let late_converged = loop {
        let list = slices.list(&ListParams::default()).await.expect("slices");
        let listed = list.items.iter().flat_map(|s| &s.spec.nodes).any(|n| {
            n.name == name && !n.pod_cidrs.is_empty() && !n.wire_guard_public_key.is_empty()
        });
        if listed {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "late node never converged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late_writes =
        metric(port, "unbounded_net_controller_api_writes_total").unwrap_or(0.0) - before;
    println!(
        "  one node joining the converged cluster: {:.2} s to its slice entry, {} API writes ({late_writes} controller + 1 agent)",
        late_converged.as_secs_f64(),
        late_writes + 1.0
    );
    assert!(
        per_join <= 3.0,
        "API writes per node join {per_join:.2} > 3"
    );
}
