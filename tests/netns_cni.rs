//! CNI ADD with the Debian containernetworking-plugins, using the conflist the agent wrote,
//! gives a pod namespace an address from its node's range, and the pod reaches a pod on the
//! other node through the agent's tunnel. Also: the masquerade table appears and `--cleanup`
//! removes it.

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
