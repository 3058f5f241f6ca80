//! CNI ADD with the Debian containernetworking-plugins, using the conflist the agent wrote,
//! gives a pod namespace an address from its node's range, and the pod reaches a pod on the
//! other node through the agent's tunnel. Also: the masquerade table appears and `--cleanup`
//! removes it, and its MSS clamp rewrites a forwarded SYN towards a narrower route.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_cni.rs"]
mod netns_cni;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;
use std::path::PathBuf;

use ipnet::IpNet;
use netns::{Netns, require_root, veth};
use netns_nodes::mesh_plan;
use unbounded_net::core::dataplane::{CniConfig, Encap, MasqueradeConfig};
use unbounded_net::node::cni::{self, CniOutcome};
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::{Reconciler, masquerade};

/// Temporary directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("unet-cni-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn node(ns: &Netns, pod_cidr: &str, plan: &unbounded_net::core::NodeDataplane) {
    let mut dp = ns.enter(|| {
        NetlinkDataplane::enable_forwarding().unwrap();
        NetlinkDataplane::connect().unwrap()
    });
    dp.ensure_pod_bridge(cni::BRIDGE, &[pod_cidr.parse().unwrap()])
        .await
        .unwrap();
    let rep = Reconciler::new(dp, "unwgunused")
        .reconcile(plan, &BTreeSet::new())
        .await
        .unwrap();
    assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
}

fn pod_address(result: &serde_json::Value) -> IpNet {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in CNI result {result}"))
}

#[tokio::test(flavor = "current_thread")]
async fn cni_add_gives_pods_addresses_that_reach_across_nodes() {
    if !require_root("cni_add_gives_pods_addresses_that_reach_across_nodes") {
        return;
    }
    if let Some(why) = netns_cni::plugins_missing() {
        netns::report_skip(&format!("cni_add: {why}"));
        return;
    }
    let a = Netns::new("cnia");
    let b = Netns::new("cnib");
    veth(&a, "eth0", "192.168.52.1/24", &b, "eth0", "192.168.52.2/24");
    let mtu = 1400;
    node(
        &a,
        "10.244.1.0/24",
        &mesh_plan(
            "a",
            Encap::Vxlan,
            mtu,
            &[("b", "192.168.52.1", "192.168.52.2", "10.244.2.0/24")],
        ),
    )
    .await;
    node(
        &b,
        "10.244.2.0/24",
        &mesh_plan(
            "b",
            Encap::Vxlan,
            mtu,
            &[("a", "192.168.52.2", "192.168.52.1", "10.244.1.0/24")],
        ),
    )
    .await;

    let mut attachments = Vec::new();
    let mut pods = Vec::new();
    let dirs = [TempDir::new("a"), TempDir::new("b")];
    for (node_ns, range, dir, tag) in [
        (&a, "10.244.1.0/24", &dirs[0], "poda"),
        (&b, "10.244.2.0/24", &dirs[1], "podb"),
    ] {
        let cfg = CniConfig {
            manage: true,
            ranges: vec![range.parse().unwrap()],
            mtu,
        };
        let conf_dir = dir.0.join("net.d");
        let CniOutcome::Written(path) = cni::write_conflist(&conf_dir, &cfg, false).unwrap() else {
            panic!("conflist not written")
        };
        let pod = Netns::new(tag);
        let att = netns_cni::add(&node_ns.name, &pod.name, &path, &dir.0.join("ipam")).unwrap();
        let addr = pod_address(&att.result);
        let range: IpNet = range.parse().unwrap();
        assert!(
            range.contains(&addr.addr()),
            "{addr} outside the node's range {range}"
        );
        assert_ne!(
            addr.addr(),
            range.hosts().next().unwrap(),
            "pod got the gateway address"
        );
        let link = pod.sh("ip -o link show eth0");
        assert!(link.contains(&format!("mtu {mtu}")), "pod MTU: {link}");
        attachments.push(att);
        pods.push((pod, addr.addr()));
    }
    // Pod on A reaches the pod on B (and back) through the VXLAN tunnel.
    let (pod_a, _) = &pods[0];
    let (_, b_ip) = &pods[1];
    pod_a.sh(&format!("ping -c 3 -i 0.2 -W 2 {b_ip}"));
    // Attachments (CNI DEL) drop before the namespaces.
    drop(attachments);
}

#[test]
fn masquerade_table_is_ours_and_cleanup_removes_it() {
    if !require_root("masquerade_table_is_ours_and_cleanup_removes_it") {
        return;
    }
    let ns = Netns::new("masq");
    let cfg = MasqueradeConfig {
        source_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        cluster_pod_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        non_masquerade_cidrs: vec!["172.16.0.0/12".parse().unwrap()],
        mss_clamp_cidrs: vec![],
    };
    ns.enter(|| {
        // Someone else's table stays untouched.
        std::process::Command::new("nft")
            .args(["add", "table", "inet", "someone_else"])
            .status()
            .unwrap();
        masquerade::apply(&cfg).unwrap();
        masquerade::apply(&cfg).unwrap(); // idempotent
        let listed = masquerade::list().unwrap().expect("table exists");
        assert!(listed.contains("masquerade"), "{listed}");
        assert!(listed.contains("10.244.1.0/24"), "{listed}");
        masquerade::remove().unwrap();
        assert!(masquerade::list().unwrap().is_none());
        masquerade::remove().unwrap(); // absent is fine
    });
    assert!(ns.sh("nft list tables").contains("someone_else"));
}

/// MSS of the first SYN `server` sees on `dev` while `client` keeps dialling `addr`.
fn observed_syn_mss(server: &Netns, dev: &str, client: &Netns, addr: std::net::SocketAddr) -> u32 {
    let listener = server.enter(|| std::net::TcpListener::bind(addr).unwrap());
    let capture = {
        let name = server.name.clone();
        let dev = dev.to_string();
        std::thread::spawn(move || {
            let out = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &name, "timeout", "10", "tcpdump", "-n", "-l", "-c", "1",
                ])
                .args([
                    "-i",
                    &dev,
                    "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    // tcpdump needs a moment to attach: dial until it has seen a SYN.
    while !capture.is_finished() {
        client.enter(|| {
            let _ = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1));
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(listener);
    let line = capture.join().unwrap();
    line.split("mss ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no SYN with an MSS captured: {line:?}"))
}

#[test]
fn mss_clamp_rewrites_forwarded_syns_towards_narrower_routes() {
    if !require_root("mss_clamp_rewrites_forwarded_syns_towards_narrower_routes") {
        return;
    }
    // client -- router -- server; the router's route to the server carries mtu 1300 (a
    // narrow tunnel path), while every interface has 1500 (the pod MTU).
    let client = Netns::new("mssc");
    let router = Netns::new("mssr");
    let server = Netns::new("msss");
    veth(&client, "c0", "10.77.1.2/24", &router, "r1", "10.77.1.1/24");
    veth(&router, "r2", "10.77.2.1/24", &server, "s0", "10.77.2.2/24");
    client.sh("ip route add default via 10.77.1.1");
    server.sh("ip route add default via 10.77.2.1");
    router.sh("sysctl -qw net.ipv4.ip_forward=1");
    router.sh("ip route add 10.77.9.0/24 via 10.77.2.2 mtu 1300");
    server.sh("ip addr add 10.77.9.2/32 dev lo");
    let target: std::net::SocketAddr = "10.77.9.2:7777".parse().unwrap();
    let mut cfg = MasqueradeConfig {
        source_cidrs: vec!["10.77.1.0/24".parse().unwrap()],
        cluster_pod_cidrs: vec!["10.77.0.0/16".parse().unwrap()],
        non_masquerade_cidrs: vec![],
        mss_clamp_cidrs: vec![],
    };
    router.enter(|| masquerade::apply(&cfg).unwrap());
    let unclamped = observed_syn_mss(&server, "s0", &client, target);
    assert_eq!(
        unclamped, 1460,
        "without a clamp the client's own MSS passes"
    );

    cfg.mss_clamp_cidrs = vec!["10.77.9.0/24".parse().unwrap()];
    router.enter(|| {
        masquerade::apply(&cfg).unwrap();
        masquerade::apply(&cfg).unwrap(); // idempotent
    });
    let clamped = observed_syn_mss(&server, "s0", &client, target);
    assert_eq!(
        clamped, 1260,
        "route mtu 1300 - 40 bytes of IPv4 and TCP headers"
    );

    router.enter(|| masquerade::remove().unwrap());
    let after = observed_syn_mss(&server, "s0", &client, target);
    assert_eq!(after, 1460, "cleanup removes the clamp");
}
