//! The `unbounded-net-node` binary in a namespace with the API server unreachable: it keeps
//! the kernel state it finds (fail static), creates its key with mode 0600, serves metrics
//! (counting API errors) and a not-ready `/readyz`; `--cleanup` then removes what it owns.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netns::{Netns, require_root, veth};
use netns_nodes::{mesh_plan, owned_links};
use unbounded_net::core::dataplane::Encap;
use unbounded_net::node::Reconciler;
use unbounded_net::node::netlink::NetlinkDataplane;

const BIN: &str = env!("CARGO_BIN_EXE_unbounded-net-node");

struct StateDir(PathBuf);
impl Drop for StateDir {
    fn drop(&mut self) {
        // Stop the boringtun this test's agent started (its PID is in the state directory).
        if let Ok(pid) = std::fs::read_to_string(self.0.join("boringtun.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dump(ns: &Netns) -> String {
    ns.sh("ip -o link show | grep -v unwg | cut -d' ' -f2,3,5; ip route show table all proto 85")
}

#[tokio::test(flavor = "current_thread")]
async fn agent_binary_is_fail_static_without_api_and_cleans_up() {
    if !require_root("agent_binary_is_fail_static_without_api_and_cleans_up") {
        return;
    }
    let a = Netns::new("aga");
    let b = Netns::new("agb");
    veth(&a, "eth0", "192.168.53.1/24", &b, "eth0", "192.168.53.2/24");
    // State a previous agent run left behind.
    let plan = mesh_plan(
        "a",
        Encap::Vxlan,
        1400,
        &[("b", "192.168.53.1", "192.168.53.2", "10.244.2.0/24")],
    );
    let mut dp = a.enter(|| NetlinkDataplane::connect().unwrap());
    dp.ensure_pod_bridge("cbr0", &["10.244.1.0/24".parse().unwrap()])
        .await
        .unwrap();
    Reconciler::new(dp, "x")
        .reconcile(&plan, &BTreeSet::new())
        .await
        .unwrap();
    let before = dump(&a);
    assert_eq!(owned_links(&a.sh("ip -o link show")).len(), 1);

    let state = StateDir(std::env::temp_dir().join(format!("unet-agent-{}", std::process::id())));
    let cni_dir = state.0.join("net.d");
    let kubeconfig = state.0.join("kubeconfig");
    std::fs::create_dir_all(&state.0).unwrap();
    // An API server that is not there (port 1 on the namespace's own loopback).
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
    )
    .unwrap();
    let wg = format!("unwg{}g", std::process::id() % 1_000_000);
    let args = [
        "--node-name",
        "a",
        "--state-dir",
        state.0.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--cni-conf-dir",
        cni_dir.to_str().unwrap(),
        "--wireguard-device",
        &wg,
        "--resync-seconds",
        "1",
        "--metrics-addr",
        "127.0.0.1:9102",
        // This test checks the netlink dataplane's kernel state (eBPF is the default).
        "--dataplane",
        "netlink",
    ];
    let agent = a.spawn(BIN, &args);

    let start = Instant::now();
    let metrics = loop {
        let ok = a.try_sh("curl -sf http://127.0.0.1:9102/metrics -o /tmp/unet-agent-metrics");
        if ok {
            let m = a.sh("curl -sf http://127.0.0.1:9102/metrics");
            if m.contains("unbounded_net_node_api_errors_total 1")
                || m.contains("unbounded_net_node_api_errors_total 2")
                || m.contains("unbounded_net_node_api_errors_total 3")
            {
                break m;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "agent never served metrics with API errors"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = std::fs::remove_file("/tmp/unet-agent-metrics");
    assert!(
        metrics.contains("unbounded_net_node_probes_malformed"),
        "{metrics}"
    );
    assert!(
        !a.try_sh("curl -sf http://127.0.0.1:9102/readyz"),
        "ready without a plan"
    );
    assert!(a.try_sh("curl -sf http://127.0.0.1:9102/healthz"));
    let key = state.0.join("wireguard.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Fail static: two more resync periods without the API and nothing moved.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        dump(&a),
        before,
        "the agent touched the kernel without a plan"
    );
    assert!(!cni_dir.exists(), "CNI config written without a plan");
    // SIGTERM (what the kubelet sends) ends the agent promptly and cleanly, kernel untouched.
    let mut agent = agent;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopping = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "agent ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "agent exited with {status} on SIGTERM");
    assert_eq!(dump(&a), before, "SIGTERM changed the kernel");
    drop(agent);

    // --cleanup removes the owned tunnel and route, the WireGuard device and the key.
    let out = a.sh(&format!(
        "{BIN} --node-name a --cleanup --state-dir {} --cni-conf-dir {} --wireguard-device {wg} 2>&1",
        state.0.display(),
        cni_dir.display()
    ));
    assert!(out.contains("cleanup complete"), "{out}");
    assert!(owned_links(&a.sh("ip -o link show")).is_empty());
    assert_eq!(a.sh("ip route show proto 85"), "");
    assert!(!a.sh("ip -o link show").contains(&wg));
    assert!(!key.exists());
}
