//! The controller loop over the in-memory seam (the simulator's view): allocation, one Node
//! write per join, SiteNodeSlices, and a leader hand-over with no double allocation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::{Clock, Controller, ControllerSettings};
use crate::api::{SITE_LABEL, Site, SiteNodeSlice};
use crate::cluster::{Cluster, InMemoryCluster};

/// Wall time from tokio's clock (the simulator supplies a clock of its own the same way):
/// Lease expiry is judged on it.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.0.elapsed();
        Timestamp::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000) + elapsed
    }
}

fn settings(identity: &str) -> ControllerSettings {
    ControllerSettings {
        identity: identity.into(),
        lease_duration: Duration::from_millis(600),
        renew_interval: Duration::from_millis(100),
        debounce: Duration::from_millis(10),
        ..ControllerSettings::default()
    }
}

async fn add_site(c: &InMemoryCluster, name: &str, nodes: &str, pool: &str) {
    let site: Site = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeCidrs": [nodes], "podCidrAssignments": [{"cidrBlocks": [pool]}]}
    }))
    .expect("site");
    c.create(None, &site).await.expect("create site");
}

async fn add_node(c: &InMemoryCluster, name: &str, ip: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
    }))
    .expect("node");
    c.create(None, &node).await.expect("create node");
}

fn spawn(c: &InMemoryCluster, identity: &str) -> tokio::task::JoinHandle<()> {
    let controller = Controller::new(
        c.clone(),
        settings(identity),
        Arc::new(TokioClock(tokio::time::Instant::now())),
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        controller.run(rx).await
    })
}

/// Node name → (site label, pod CIDRs), once `expected` nodes have pod CIDRs.
async fn allocated(
    c: &InMemoryCluster,
    expected: usize,
) -> BTreeMap<String, (Option<String>, Vec<IpNet>)> {
    for _ in 0..300 {
        let nodes = c.list::<Node>(None).await.expect("list");
        let map: BTreeMap<_, _> = nodes
            .items
            .iter()
            .map(|n| {
                let f = crate::core::NodeFacts::from_node(n);
                (
                    f.name.clone(),
                    (
                        n.metadata
                            .labels
                            .clone()
                            .unwrap_or_default()
                            .get(SITE_LABEL)
                            .cloned(),
                        f.pod_cidrs,
                    ),
                )
            })
            .collect();
        if map.values().filter(|(_, c)| !c.is_empty()).count() >= expected {
            return map;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {expected} nodes allocated within 6 s");
}

fn assert_disjoint(all: &BTreeMap<String, (Option<String>, Vec<IpNet>)>) {
    let blocks: Vec<&IpNet> = all.values().flat_map(|(_, c)| c).collect();
    for (i, a) in blocks.iter().enumerate() {
        for b in &blocks[i + 1..] {
            assert!(!(a.contains(*b) || b.contains(*a)), "{a} overlaps {b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_write_per_join_and_slices_list_everyone() {
    let c = InMemoryCluster::default();
    add_site(&c, "a", "10.1.0.0/16", "100.64.0.0/16").await;
    add_site(&c, "b", "10.2.0.0/16", "100.65.0.0/16").await;
    let task = spawn(&c, "solo");
    for i in 0..30 {
        add_node(
            &c,
            &format!("n{i:02}"),
            &format!("10.{}.0.{}", i % 2 + 1, i + 1),
        )
        .await;
    }
    let all = allocated(&c, 30).await;
    assert_disjoint(&all);
    for (name, (label, cidrs)) in &all {
        let i: usize = name[1..].parse().expect("index");
        let (site, pool) = if i.is_multiple_of(2) {
            ("a", "100.64.0.0/16")
        } else {
            ("b", "100.65.0.0/16")
        };
        assert_eq!(label.as_deref(), Some(site), "{name}");
        assert!(
            pool.parse::<IpNet>().expect("pool").contains(&cidrs[0]),
            "{name}"
        );
    }
    // Label and pod CIDRs go out in one update per node (no separate label patch).
    let node_writes = c.writes_of::<Node>();
    assert_eq!(node_writes.replace, 30, "{node_writes:?}");
    assert_eq!(node_writes.patch_metadata, 0, "{node_writes:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let slices = c.list::<SiteNodeSlice>(None).await.expect("slices").items;
    let listed: usize = slices.iter().map(|s| s.spec.nodes.len()).sum();
    assert_eq!(listed, 30);
    assert!(
        slices
            .iter()
            .all(|s| s.spec.nodes.iter().all(|n| n.pod_cidrs.len() == 1))
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_without_double_allocation() {
    let c = InMemoryCluster::default();
    add_site(&c, "a", "10.1.0.0/16", "100.64.0.0/16").await;
    let first = spawn(&c, "one");
    // Let "one" take the Lease before "two" starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = spawn(&c, "two");
    for i in 0..10 {
        add_node(&c, &format!("n{i:02}"), &format!("10.1.0.{}", i + 1)).await;
    }
    allocated(&c, 10).await;
    // Crash "one": once the task is gone, nothing of it runs (renewals included).
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    for i in 10..20 {
        add_node(&c, &format!("n{i:02}"), &format!("10.1.0.{}", i + 1)).await;
    }
    let all = allocated(&c, 20).await;
    assert_disjoint(&all);
    let lease: k8s_openapi::api::coordination::v1::Lease = c
        .get(Some("unbounded-net"), "unbounded-net-controller")
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("two")
    );
    second.abort();
}
