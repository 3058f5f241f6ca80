//! The whole agent shell (`node::shell::run`) for two nodes, each in its own namespace,
//! against the in-memory API server with the production controller publishing the
//! SiteNodeSlices the agents read: each agent publishes its key, programs the VXLAN link the
//! planner chose, writes the conflist and the masquerade table; pods' gateways reach each
//! other; with the API away nothing changes (fail static); when a node leaves the cluster its
//! tunnel and route go.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use netns::{Netns, require_root, veth};
use netns_nodes::owned_links;
use nix::sched::{CloneFlags, setns};
use unbounded_net::api::{
    SITE_LABEL, Site, SiteNodeSlice, SiteNodeSliceSpec, SliceNode, TunnelProtocol,
    WG_PUBKEY_ANNOTATION,
};
use unbounded_net::cluster::{Cluster, InMemoryCluster};
use unbounded_net::controller::{Controller, ControllerSettings, SystemClock};
use unbounded_net::core::plan_index::PlanSettings;
use unbounded_net::core::synthetic::site;
use unbounded_net::node::cni::CONFLIST_FILE;
use unbounded_net::node::shell::{self, AgentConfig, USERSPACE_PID_FILE};

/// An agent running on its own thread inside a namespace; stopped, and its boringtun
/// stopped by PID, on drop.
struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    state: PathBuf,
}

impl Agent {
    fn start(ns: &Netns, cluster: InMemoryCluster, cfg: AgentConfig) -> Agent {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let path = format!("/run/netns/{}", ns.name);
        let state = cfg.state_dir.clone();
        let thread = std::thread::spawn(move || {
            let f = File::open(path).map_err(|e| e.to_string())?;
            setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                tokio::select! {
                    r = shell::run(cluster, cfg) => r.map_err(|e| e.to_string()),
                    _ = stop_rx => Ok(()),
                }
            })
        });
        Agent {
            stop: Some(stop),
            thread: Some(thread),
            state,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(pid) = std::fs::read_to_string(self.state.join(USERSPACE_PID_FILE))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn k8s_node(name: &str, ip: &str, pod_cidr: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some([(SITE_LABEL.to_string(), "s".to_string())].into());
    n.spec = Some(NodeSpec {
        pod_cidr: Some(pod_cidr.into()),
        pod_cidrs: Some(vec![pod_cidr.into()]),
        ..Default::default()
    });
    n.status = Some(NodeStatus {
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: ip.into(),
        }]),
        ..Default::default()
    });
    n
}

fn config(node: &str, tag: &str) -> AgentConfig {
    let state = std::env::temp_dir().join(format!("unet-ac-{tag}-{}", std::process::id()));
    AgentConfig {
        node_name: node.into(),
        cni_conf_dir: state.join("net.d"),
        state_dir: state,
        force_cni: false,
        wireguard_device: format!("unwg{}{tag}", std::process::id() % 1_000_000),
        force_userspace_wireguard: false,
        resync: Duration::from_millis(300),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        plan_settings: PlanSettings::default(),
        underlay_mtu: None,
    }
}

async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_shell_programs_plan_fails_static_and_follows_changes() {
    if !require_root("agent_shell_programs_plan_fails_static_and_follows_changes") {
        return;
    }
    let a = Netns::new("aca");
    let b = Netns::new("acb");
    veth(&a, "eth0", "192.168.55.1/24", &b, "eth0", "192.168.55.2/24");

    let cluster = InMemoryCluster::default();
    let mut spec = site("192.168.55.0/24", "10.244.0.0/16");
    spec.tunnel_protocol = Some(TunnelProtocol::Vxlan);
    cluster.create(None, &Site::new("s", spec)).await.unwrap();
    for (n, ip, cidr) in [
        ("n1", "192.168.55.1", "10.244.1.0/24"),
        ("n2", "192.168.55.2", "10.244.2.0/24"),
    ] {
        let node = k8s_node(n, ip, cidr);
        cluster.create(None, &node).await.unwrap();
        cluster.replace_status(None, n, &node).await.unwrap();
    }
    // A node with a garbage key annotation and an unparseable pod CIDR: skipped, named in
    // the logs, and the rest of the node keeps working.
    let mut bad = k8s_node("n3", "192.168.55.3", "not-a-cidr");
    bad.metadata.annotations =
        Some([(WG_PUBKEY_ANNOTATION.to_string(), "garbage".to_string())].into());
    cluster.create(None, &bad).await.unwrap();
    cluster.replace_status(None, "n3", &bad).await.unwrap();
    // A slice nobody valid wrote (the in-memory server has no schema validation): garbage
    // addresses, key and CIDR for a node that does not exist. Named in the logs, skipped.
    let junk = SiteNodeSlice::new(
        "s-junk",
        SiteNodeSliceSpec {
            site_name: "s".into(),
            slice_index: 99,
            nodes: vec![SliceNode {
                name: "ghost".into(),
                wire_guard_public_key: "not-a-key".into(),
                internal_ips: vec!["300.1.1.1".into()],
                external_ips: vec![],
                pod_cidrs: vec!["10.244.9.0/99".into()],
                underlay_mtu: Some(1),
            }],
        },
    );
    cluster.create(None, &junk).await.unwrap();
    let (_stop_controller, shutdown) = tokio::sync::watch::channel(false);
    let settings = ControllerSettings {
        debounce: Duration::from_millis(50),
        ..Default::default()
    };
    tokio::spawn(
        Controller::new(cluster.clone(), settings, std::sync::Arc::new(SystemClock)).run(shutdown),
    );
    let cfg_a = config("n1", "a");
    let cni_a = cfg_a.cni_conf_dir.join(CONFLIST_FILE);
    let _agent_a = Agent::start(&a, cluster.clone(), cfg_a);
    let _agent_b = Agent::start(&b, cluster.clone(), config("n2", "b"));

    // Key published, link + route programmed, conflist and masquerade table written.
    let limit = Duration::from_secs(15);
    for n in ["n1", "n2"] {
        let start = Instant::now();
        loop {
            let node: Node = cluster.get(None, n).await.unwrap();
            let key = node
                .metadata
                .annotations
                .and_then(|a| a.get(WG_PUBKEY_ANNOTATION).cloned());
            if key.is_some_and(|k| unbounded_net::core::snapshot::is_wireguard_key(&k)) {
                break;
            }
            assert!(start.elapsed() < limit, "{n} never published its key");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eventually("route to n2 programmed on n1", limit, || {
        a.sh("ip route show proto 85").contains("10.244.2.0/24")
    })
    .await;
    eventually("route to n1 programmed on n2", limit, || {
        b.sh("ip route show proto 85").contains("10.244.1.0/24")
    })
    .await;
    eventually("conflist written", limit, || cni_a.exists()).await;
    // The tunnel to n2 (n3 may get one too: it is a Site member with a usable address).
    let to_n2 = unbounded_net::node::render::tunnel_name(
        unbounded_net::node::kernel::TunnelKind::Vxlan {
            vni: unbounded_net::node::render::link_vni(
                "192.168.55.1".parse().unwrap(),
                "192.168.55.2".parse().unwrap(),
            ),
        },
        "n2",
    );
    assert!(owned_links(&a.sh("ip -o link show")).contains(&to_n2));
    assert!(a.sh("nft list tables").contains("unbounded_net"));
    a.sh("ping -c 2 -i 0.2 -W 2 -I 10.244.1.1 10.244.2.1");

    // API away: nothing moves, traffic keeps flowing.
    let dump = || a.sh("ip -o link show | cut -d' ' -f2; ip route show table all proto 85");
    let before = dump();
    cluster.set_unavailable(Some("test: API server away"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(dump(), before, "kernel changed while the API was away");
    a.sh("ping -c 1 -W 2 -I 10.244.1.1 10.244.2.1");
    cluster.set_unavailable(None);

    // n2 leaves the cluster: n1 drops its tunnel and route.
    cluster.delete::<Node>(None, "n2").await.unwrap();
    eventually("n1 removed n2's route and tunnel", limit, || {
        !a.sh("ip route show proto 85").contains("10.244.2.0/24")
            && !owned_links(&a.sh("ip -o link show")).contains(&to_n2)
    })
    .await;
}
